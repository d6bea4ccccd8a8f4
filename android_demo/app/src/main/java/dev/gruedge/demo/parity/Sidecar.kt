package dev.gruedge.demo.parity

import java.util.Locale

/**
 * What the demo shows about its model, read from the model's sidecar (`model.json`, written by `gru-edge convert`):
 * the units its forecasts are in and the sizes of its `step` signature's states. gru-edge models read raw values
 * and return forecasts in the data's units (the transform and its inverse are in the graph), so the app prints the
 * model's outputs as they are, labelled with the training column's name.
 */
class Sidecar(private val doc: Map<*, *>) {
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
        fun parse(bytes: ByteArray): Sidecar =
            Sidecar(Json.parse(bytes) as? Map<*, *> ?: throw JsonException("a sidecar is a JSON object"))
    }
}
