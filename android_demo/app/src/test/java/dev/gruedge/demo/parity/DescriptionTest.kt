package dev.gruedge.demo.parity

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File

class DescriptionTest {
    /** The demo's own assets (jvm-test.sh names the folder). */
    private val assets = File(System.getProperty("demo.assets") ?: "app/src/main/assets/gru_edge")
    private val model = File(assets, "model.tflite").readBytes()

    @Test
    fun theModelDescribesItself() {
        val entries = TfliteMetadata.read(model)
        // the converter's own entries, gru-edge's description, and TFLite Support's (Android Studio reads it)
        assertTrue(entries.keys.toString(), entries.keys.containsAll(listOf("min_runtime_version", "gru_edge",
            "TFLITE_METADATA")))
        assertEquals("M001", String(entries.getValue("TFLITE_METADATA"), 4, 4, Charsets.US_ASCII))
        val description = Description.fromModel(model)
        assertEquals("android-gpu", description.recipe)
        assertEquals(GpuSettings("fp16", "cpu", fromRecipe = true), description.gpu)
    }

    @Test
    fun theDemoShowsItsForecastsInTheDataUnits() {
        val description = Description.fromModel(model)
        assertEquals("passengers", description.units)
        // What the app prints for the bundle's first sample: the model's own output, in passengers (the airline's
        // held-out months are 300-700 passengers; standardized units would be near 0).
        val expected = Npy.read(File(assets, "bundle/expected.npy").readBytes(), "expected.npy").row(0)
        val text = description.forecastText(expected)
        assertTrue(text, Regex("""\d{3}(\.\d)? passengers""").matches(text))
        assertTrue(text, expected[0] in 300f..700f)
    }

    @Test
    fun stateSizesComeFromTheStepSignature() {
        val description = Description.fromModel(model)
        assertTrue("step" in description.signatures)
        // GRU(32) state, the ring of 13 log frames of one column, and its count
        assertEquals(listOf(32, 1, 13), description.stateSizes)
    }

    @Test
    fun aModelWithoutUnitsPrintsBareNumbers() {
        val description = Description(mapOf("task" to null))
        assertEquals("", description.units)
        assertEquals("1.500, -2.000", description.forecastText(floatArrayOf(1.5f, -2f)))
        assertEquals(emptyList<Int>(), description.stateSizes)
        assertEquals("unknown", description.recipe)
    }

    @Test
    fun aModelWithoutDescriptionOrDamagedIsNamed() {
        val notTflite = assertThrows(TfliteFormatException::class.java) { TfliteMetadata.read(ByteArray(16)) }
        assertTrue(notTflite.message!!.contains("TFL3"))
        // cut the file short: an offset then points outside it
        val cut = assertThrows(TfliteFormatException::class.java) { TfliteMetadata.read(model.copyOf(64)) }
        assertTrue(cut.message!!, cut.message!!.contains("damaged"))
        // a length field made huge or negative: named, not an out-of-memory crash
        val raw = TfliteMetadata.read(model).getValue("gru_edge")
        val at = indexOf(model, raw) - 4
        for (bad in listOf(Int.MAX_VALUE, -5)) {
            val lying = model.copyOf()
            java.nio.ByteBuffer.wrap(lying).order(java.nio.ByteOrder.LITTLE_ENDIAN).putInt(at, bad)
            assertThrows(TfliteFormatException::class.java) { TfliteMetadata.read(lying) }
        }
        // rename the entry: the model then carries no gru-edge description
        val renamed = model.copyOf()
        "GRU_EDGE".toByteArray().copyInto(renamed, indexOf(renamed, "gru_edge".toByteArray()))
        val none = assertThrows(JsonException::class.java) { Description.fromModel(renamed) }
        assertTrue(none.message!!, none.message!!.contains("no gru-edge description"))
    }

    @Test
    fun theDescriptionIsTheOneThePythonSideWrote() {
        // gru-edge wrote the same JSON into the model; the reader returns it byte for byte
        val raw = TfliteMetadata.read(model).getValue("gru_edge")
        assertArrayEquals(raw, model.copyOfRange(indexOf(model, raw), indexOf(model, raw) + raw.size))
        assertFalse((Json.parse(raw) as Map<*, *>).containsKey("model_sha256"))  // a file cannot hold its own hash
    }

    private fun indexOf(haystack: ByteArray, needle: ByteArray): Int =
        (0..haystack.size - needle.size).first { i -> needle.indices.all { haystack[i + it] == needle[it] } }
}
