package dev.gruedge.demo.parity

/**
 * How a model's GPU settings (its recipe's `[gpu]` table, inside the model's description) are applied: the one
 * mapping shared by `gru-edge verify --accelerator gpu` on the desktop and the Android demo.
 *
 * | recipe                | desktop (ai_edge_litert)            | Android (LiteRT Kotlin)                                  |
 * |-----------------------|-------------------------------------|----------------------------------------------------------|
 * | precision = "fp32"    | `GpuOptions(enforce_f32=True)`      | `CompiledModel.GpuOptions(precision = Precision.FP32)`   |
 * | precision = "fp16"    | `GpuOptions(enforce_f32=False)`     | `CompiledModel.GpuOptions()` (LiteRT's default: fp16     |
 * |                       |                                     | where the GPU supports it, as on the desktop)            |
 * | every op on the GPU   | GPU + CPU, FAIL unless fully        | GPU alone: compiling fails unless every op runs there    |
 * |                       | accelerated                         |                                                          |
 * | fallback = "cpu"      | no GPU: exit 3 (GPU unavailable)    | GPU refused: run on the CPU and say why                  |
 * | fallback = "none"     | the same                            | GPU refused: report the error, no CPU run                |
 *
 * A recipe without `[gpu]` is checked with the defaults (fp16, fallback cpu), as `verify --accelerator gpu` does.
 * The parity limits come from the bundle's manifest, made for the same precision.
 */
data class GpuSettings(val precision: String, val fallback: String, val fromRecipe: Boolean) {
    init {
        require(precision in PRECISIONS) { "GPU precision '$precision': expected one of ${PRECISIONS.joinToString()}" }
        require(fallback in FALLBACKS) { "GPU fallback '$fallback': expected one of ${FALLBACKS.joinToString()}" }
    }

    /** LiteRT's GpuOptions precision FP32 (true), or its default (false). */
    val enforceFp32: Boolean get() = precision == "fp32"

    /** Whether a model the GPU cannot run is run on the CPU instead. */
    val cpuFallback: Boolean get() = fallback == "cpu"

    /** "fp16 (fallback cpu)", or "LiteRT defaults: fp16 (fallback cpu)" when the recipe asks for no GPU. */
    override fun toString(): String = (if (fromRecipe) "" else "LiteRT defaults: ") + "$precision (fallback $fallback)"

    companion object {
        val PRECISIONS = listOf("fp16", "fp32")
        val FALLBACKS = listOf("cpu", "none")

        /** From a description's `gpu` entry (null: the recipe asks for no GPU). */
        fun from(gpu: Map<*, *>?): GpuSettings =
            if (gpu == null) GpuSettings("fp16", "cpu", fromRecipe = false)
            else GpuSettings(gpu["precision"] as? String ?: "fp16", gpu["fallback"] as? String ?: "cpu", true)
    }
}
