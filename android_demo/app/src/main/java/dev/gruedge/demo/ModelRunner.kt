package dev.gruedge.demo

import android.content.res.AssetManager
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.LiteRtException
import com.google.ai.edge.litert.TensorBuffer
import dev.gruedge.demo.parity.FloatTensor
import dev.gruedge.demo.parity.GpuSettings

/**
 * A model compiled with LiteRT's CompiledModel API on one accelerator. [accelerator] is the one that actually
 * runs it: when the GPU was asked for and cannot take the model, the runner falls back to the CPU (if the model's
 * GPU settings allow) and [note] says why. The GPU settings are applied as [GpuSettings] documents, the same way
 * as `gru-edge verify --accelerator gpu`. [close] releases every native resource: the tensor buffers, then the model.
 */
class ModelRunner private constructor(
    private val model: CompiledModel,
    val accelerator: String,
    val note: String,
) : AutoCloseable {

    companion object {
        const val SERVE = "serving_default"
        const val STEP = "step"

        /** [gpu] null: the CPU; otherwise the GPU with those settings. */
        fun open(assets: AssetManager, modelAsset: String, gpu: GpuSettings?): ModelRunner {
            if (gpu == null) return ModelRunner(cpu(assets, modelAsset), "CPU", "")
            val options = CompiledModel.Options(Accelerator.GPU).apply {
                // GPU alone, no CPU in the set: compiling fails unless every op runs on the GPU.
                gpuOptions = if (gpu.enforceFp32) {
                    CompiledModel.GpuOptions(precision = CompiledModel.GpuOptions.Precision.FP32)
                } else {
                    CompiledModel.GpuOptions()  // LiteRT's default precision: fp16 where the GPU supports it
                }
            }
            return try {
                ModelRunner(CompiledModel.create(assets, modelAsset, options), "GPU", "GPU settings: $gpu")
            } catch (e: LiteRtException) {
                if (!gpu.cpuFallback) throw e
                ModelRunner(cpu(assets, modelAsset), "CPU", "GPU refused the model, ran on CPU (fallback cpu): " +
                    "${e.message}")
            }
        }

        /**
         * XNNPACK packs the weights of every FULLY_CONNECTED node separately unless it has a weight cache; gru-edge's
         * unrolled graph reads one matrix at every step, so without the cache each step gets its own packed copy
         * (2.3x slower on R2 float32, measured on desktop). ":memory" keeps the cache in memory: nothing on disk to
         * go stale; if the runtime cannot make one it runs without.
         */
        private const val XNNPACK_IN_MEMORY_CACHE = ":memory"

        private fun cpu(assets: AssetManager, modelAsset: String) =
            CompiledModel.create(assets, modelAsset, CompiledModel.Options(Accelerator.CPU).apply {
                cpuOptions = CompiledModel.CpuOptions(xnnPackWeightCachePath = XNNPACK_IN_MEMORY_CACHE)
            })
    }

    private val inputs = model.createInputBuffers(SERVE)
    private val outputs = model.createOutputBuffers(SERVE)

    /** Runs one sequence (batch 1, [T * F] floats) and returns the output vector. */
    fun run(sequence: FloatArray): FloatArray {
        inputs[0].writeFloat(sequence)
        model.run(inputs, outputs, SERVE)
        return outputs[0].readFloat()
    }

    /** Runs every row of [batch] ([N, T, F]) and returns the outputs as [N, O]. */
    fun runAll(batch: FloatTensor): FloatTensor {
        val rows = (0 until batch.rows).map { run(batch.row(it)) }
        val width = rows.firstOrNull()?.size ?: 0
        val data = FloatArray(rows.size * width)
        rows.forEachIndexed { i, r -> r.copyInto(data, i * width) }
        return FloatTensor(intArrayOf(rows.size, width), data)
    }

    /** Median latency in microseconds after [warmup] runs (the first runs include GPU shader compilation). */
    fun medianMicros(sequence: FloatArray, warmup: Int = 20, runs: Int = 100): Double {
        repeat(warmup) { run(sequence) }
        val times = LongArray(runs) {
            val start = System.nanoTime()
            run(sequence)
            System.nanoTime() - start
        }
        times.sort()
        return times[runs / 2] / 1000.0
    }

    private val streams = mutableListOf<Stream>()

    /** Streaming: one time step through the `step` signature with explicit states; closed with the runner. */
    fun stream(stateSizes: List<Int>): Stream = Stream(stateSizes).also { streams += it }

    inner class Stream internal constructor(private val stateSizes: List<Int>) {
        internal val stepInputs = model.createInputBuffers(STEP)
        internal val stepOutputs = model.createOutputBuffers(STEP)
        private var states = stateSizes.map { FloatArray(it) }

        fun reset() {
            states = stateSizes.map { FloatArray(it) }
        }

        /** Feeds one frame ([F] floats) and returns the prediction after it. */
        fun push(frame: FloatArray): FloatArray {
            stepInputs[0].writeFloat(frame)
            states.forEachIndexed { i, s -> stepInputs[i + 1].writeFloat(s) }
            model.run(stepInputs, stepOutputs, STEP)
            states = states.indices.map { stepOutputs[it + 1].readFloat() }
            return stepOutputs[0].readFloat()
        }
    }

    override fun close() {
        val buffers: List<TensorBuffer> = inputs + outputs + streams.flatMap { it.stepInputs + it.stepOutputs }
        buffers.forEach { it.close() }
        model.close()
    }
}
