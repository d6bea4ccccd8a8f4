package dev.gruedge.demo.parity

import java.util.Locale

/**
 * What the demo knows about its model, read from the model itself: `gru-edge convert` writes its description
 * (recipe, signatures, GPU settings, units; the sidecar's content) into the `.tflite`'s metadata entry "gru_edge".
 * gru-edge models read raw values and return forecasts in the data's units (the transform and its inverse are in
 * the graph), so the app prints the model's outputs as they are, labelled with the training column's name.
 */
class Description(private val doc: Map<*, *>) {
    /** The recipe the model was converted with, e.g. "android-gpu". */
    val recipe: String get() = ((doc["recipe"] as? Map<*, *>)?.get("name") as? String) ?: "unknown"

    /** The recipe's GPU settings, applied as `gru-edge verify --accelerator gpu` applies them (see [GpuSettings]). */
    val gpu: GpuSettings get() = GpuSettings.from(doc["gpu"] as? Map<*, *>)

    /** The data's units, e.g. "passengers" (the column the model was trained on); "" when the model says nothing. */
    val units: String get() = ((doc["task"] as? Map<*, *>)?.get("units") as? String).orEmpty()

    val signatures: List<String> get() = (doc["signatures"] as? List<*>).orEmpty().filterIsInstance<String>()

    /** Floats per batch row of each `state_*` input of the `step` signature, in its order: the GRU states [1, U]
     *  and, for a differenced model, the ring of lagged frames [1, lag + 1, F] and its count [1, 1]. */
    val stateSizes: List<Int>
        get() {
            val inputs = ((doc["step_signature"] as? Map<*, *>)?.get("inputs") as? List<*>).orEmpty()
            return inputs.mapNotNull { it as? Map<*, *> }.filter { (it["name"] as? String)?.startsWith("state_") == true }
                .map { (it["shape"] as List<*>).drop(1).fold(1) { size, d -> size * (d as Number).toInt() } }
        }

    /** A forecast as the app prints it: "432.1 passengers" (several values comma-separated). */
    fun forecastText(values: FloatArray): String =
        values.joinToString { String.format(Locale.ROOT, "%.4g", it) } + if (units.isEmpty()) "" else " $units"

    companion object {
        const val ENTRY = "gru_edge"
        const val FORMAT = "gru-edge-model/1"

        /** The description inside a `.tflite` (its bytes); an error naming what is wrong when it has none. */
        fun fromModel(model: ByteArray): Description {
            val raw = TfliteMetadata.read(model)[ENTRY]
                ?: throw JsonException("the model carries no gru-edge description; convert it with 'gru-edge convert'")
            val doc = Json.parse(raw) as? Map<*, *> ?: throw JsonException("the gru_edge description is not an object")
            if (doc["format"] != FORMAT) {
                throw JsonException("the model's description has format ${doc["format"]}, expected $FORMAT: " +
                    "convert it with this gru-edge")
            }
            return Description(doc)
        }
    }
}
