package dev.gruedge.demo

import android.graphics.Typeface
import android.os.Bundle
import android.os.Handler
import android.os.Looper
import android.widget.Button
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.TextView
import androidx.appcompat.app.AppCompatActivity
import dev.gruedge.demo.parity.Description
import java.util.concurrent.Executors

/**
 * Runs the parity bundle from the assets on the CPU and on the GPU (with CPU fallback) and shows, for each, the
 * accelerator that actually ran, PASS/FAIL, max error, PSNR and median latency. With a `step` signature, a
 * streaming section feeds one time step at a time and shows the running prediction.
 */
class MainActivity : AppCompatActivity() {
    private val worker = Executors.newSingleThreadExecutor()
    private val main = Handler(Looper.getMainLooper())
    private lateinit var column: LinearLayout

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        column = LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(32, 32, 32, 32)
        }
        setContentView(ScrollView(this).apply { addView(column) })
        val header = line("Loading the model and parity bundle…", bold = true)
        worker.execute {
            try {
                val bundle = DemoAssets.bundle(assets)
                val model = DemoAssets.description(assets)  // read from the model itself
                post { header.text = "Model: recipe ${model.recipe}, ${bundle.inputs.rows} samples, GPU settings: " +
                    "${model.gpu}" }
                for (gpu in listOf(null, model.gpu)) {
                    val r = try {
                        DeviceParity.run(assets, bundle, gpu)
                    } catch (e: Exception) {  // e.g. fallback "none" and the GPU refused the model
                        post { line("${if (gpu == null) "CPU" else "GPU"}: ${e.message}", bold = true) }
                        continue
                    }
                    post { show(r) }
                }
                if (ModelRunner.STEP in model.signatures) post { streamingSection(bundle, model) }
            } catch (e: Exception) {
                post { line("Error: ${e.message}", bold = true) }
            }
        }
    }

    private fun show(r: DeviceResult) {
        val rep = r.report
        line("${r.requested} requested → ran on ${r.accelerator}: ${if (rep.passed) "PASS" else "FAIL"}", bold = true)
        line("  max abs error ${"%.3g".format(rep.maxAbsError)}, PSNR ${
            if (rep.psnrDb.isInfinite()) "exact" else "%.1f dB".format(rep.psnrDb)}")
        rep.task?.let { line("  task ${it.metric}: ${"%+.2f".format(it.relativeDelta * 100)}% on ${it.rows} windows") }
        line("  median latency ${"%.1f".format(r.medianMicros)} µs (after warm-up)")
        line("  limits: ${rep.tolerances} (from ${rep.tolerancesSource})")
        if (r.note.isNotEmpty()) line("  ${r.note}")
        rep.failures.forEach { line("  - $it") }
    }

    private fun streamingSection(bundle: dev.gruedge.demo.parity.Bundle, model: Description) {
        line("Streaming: one time step at a time", bold = true)
        val running = line("")
        val button = Button(this).apply { text = "Stream the first held-out sequence" }
        column.addView(button)
        val sizes = model.stateSizes
        button.setOnClickListener {
            worker.execute {
                ModelRunner.open(assets, DemoAssets.MODEL, gpu = null).use { runner ->
                    val stream = runner.stream(sizes)
                    val seq = bundle.inputs.row(0)
                    val features = bundle.inputs.shape[2]
                    for (t in 0 until bundle.inputs.shape[1]) {
                        val y = stream.push(seq.copyOfRange(t * features, (t + 1) * features))
                        post { running.text = "t = ${t + 1}: forecast ${model.forecastText(y)}" }
                        Thread.sleep(150)
                    }
                    val full = bundle.expected.values.first().row(0)
                    post { running.append("\nfull-sequence forecast (Keras): ${model.forecastText(full)}") }
                }
            }
        }
    }

    private fun line(text: String, bold: Boolean = false): TextView = TextView(this).also {
        it.text = text
        if (bold) it.setTypeface(null, Typeface.BOLD)
        column.addView(it)
    }

    private fun post(block: () -> Unit) {
        main.post(block)
    }

    override fun onDestroy() {
        worker.shutdownNow()
        super.onDestroy()
    }
}
