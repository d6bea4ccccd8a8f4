package dev.gruedge.demo.parity

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File

class SidecarTest {
    /** The demo's own assets (jvm-test.sh names the folder). */
    private val assets = File(System.getProperty("demo.assets") ?: "app/src/main/assets/gru_edge")

    @Test
    fun theDemoShowsItsForecastsInTheDataUnits() {
        val sidecar = Sidecar.parse(File(assets, "model.json").readBytes())
        assertEquals("passengers", sidecar.units)
        // What the app prints for the bundle's first sample: the model's own output, in passengers (the airline's
        // held-out months are 300-700 passengers; standardized units would be near 0).
        val expected = Npy.read(File(assets, "bundle/expected.npy").readBytes(), "expected.npy").row(0)
        val text = sidecar.forecastText(expected)
        assertTrue(text, Regex("""\d{3}(\.\d)? passengers""").matches(text))
        assertTrue(text, expected[0] in 300f..700f)
    }

    @Test
    fun stateSizesComeFromTheStepSignature() {
        val sidecar = Sidecar.parse(File(assets, "model.json").readBytes())
        assertTrue("step" in sidecar.signatures)
        // GRU(32) state, the ring of 13 log frames of one column, and its count
        assertEquals(listOf(32, 1, 13), sidecar.stateSizes)
    }

    @Test
    fun aModelWithoutUnitsPrintsBareNumbers() {
        val sidecar = Sidecar(mapOf("task" to null))
        assertEquals("", sidecar.units)
        assertEquals("1.500, -2.000", sidecar.forecastText(floatArrayOf(1.5f, -2f)))
        assertEquals(emptyList<Int>(), sidecar.stateSizes)
    }
}
