package dev.gruedge.demo

import android.content.res.AssetManager
import dev.gruedge.demo.parity.Bundle
import dev.gruedge.demo.parity.Description
import dev.gruedge.demo.parity.GpuSettings
import dev.gruedge.demo.parity.Parity
import dev.gruedge.demo.parity.ParityReport

/**
 * What `gru-edge android` put in the assets: one folder, `gru_edge/`, with the model (which carries its own
 * description) and the parity bundle, replaced whole on every install so that the two always belong together.
 */
object DemoAssets {
    private const val DIR = "gru_edge"
    const val MODEL = "$DIR/model.tflite"
    const val BUNDLE_DIR = "$DIR/bundle"

    fun bundle(assets: AssetManager): Bundle =
        Bundle.load { name -> assets.open("$BUNDLE_DIR/$name").use { it.readBytes() } }

    fun description(assets: AssetManager): Description =
        Description.fromModel(assets.open(MODEL).use { it.readBytes() })
}

/** One parity run on one accelerator: the verdict, its figures, and what ran. */
data class DeviceResult(
    val requested: String,
    val accelerator: String,
    val note: String,
    val report: ParityReport,
    val medianMicros: Double,
)

object DeviceParity {
    /** Runs the bundle's inputs through the model on the CPU ([gpu] null) or on the GPU with the model's settings,
     *  and checks the manifest's limits. */
    fun run(assets: AssetManager, bundle: Bundle, gpu: GpuSettings?): DeviceResult {
        val sameModel = Bundle.sha256(assets.open(DemoAssets.MODEL).use { it.readBytes() }) ==
            bundle.manifest.modelSha256
        ModelRunner.open(assets, DemoAssets.MODEL, gpu).use { runner ->
            val outputs = runner.runAll(bundle.inputs)
            val first = bundle.manifest.outputs.first().name
            val compared = Parity.compare(bundle.expected, mapOf(first to outputs), bundle.manifest.tolerances,
                bundle.targets, bundle.manifest.task)
            val report = if (sameModel) compared else compared.withFailure("${DemoAssets.MODEL} is not the model " +
                "this bundle was made with (its sha256 differs from the manifest's)")
            val latency = runner.medianMicros(bundle.inputs.row(0))
            return DeviceResult(if (gpu != null) "GPU" else "CPU", runner.accelerator, runner.note, report, latency)
        }
    }
}
