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
import dev.gruedge.demo.parity.Sidecar
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
                val sidecar = DemoAssets.sidecar(assets)
                val recipe = (sidecar["recipe"] as Map<*, *>)["name"]
                val gpu = sidecar["gpu"] as? Map<*, *>
                post { header.text = "Model: recipe $recipe, ${bundle.inputs.rows} samples, GPU settings: " +
                    "${gpu?.get("precision") ?: "none"} (fallback ${gpu?.get("fallback") ?: "cpu"})" }
                for (wantGpu in listOf(false, true)) {
                    val r = DeviceParity.run(assets, bundle, wantGpu, cpuFallback = gpu?.get("fallback") != "none")
                    post { show(r) }
                }
                val card = Sidecar(sidecar)
                if (ModelRunner.STEP in card.signatures) post { streamingSection(bundle, card) }
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

    private fun streamingSection(bundle: dev.gruedge.demo.parity.Bundle, sidecar: Sidecar) {
        line("Streaming: one time step at a time", bold = true)
        val running = line("")
        val button = Button(this).apply { text = "Stream the first held-out sequence" }
        column.addView(button)
        val sizes = sidecar.stateSizes
        button.setOnClickListener {
            worker.execute {
                ModelRunner.open(assets, DemoAssets.MODEL, wantGpu = false, cpuFallback = true).use { runner ->
                    val stream = runner.Stream(sizes)
                    val seq = bundle.inputs.row(0)
                    val features = bundle.inputs.shape[2]
                    for (t in 0 until bundle.inputs.shape[1]) {
                        val y = stream.push(seq.copyOfRange(t * features, (t + 1) * features))
                        post { running.text = "t = ${t + 1}: forecast ${sidecar.forecastText(y)}" }
                        Thread.sleep(150)
                    }
                    val full = bundle.expected.values.first().row(0)
                    post { running.append("\nfull-sequence forecast (Keras): ${sidecar.forecastText(full)}") }
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
