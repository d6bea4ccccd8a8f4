package dev.gruedge.demo.parity

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

/** The mapping `gru-edge verify --accelerator gpu` uses (gru_edge/gpu.py: GpuOptions(enforce_f32=precision ==
 *  "fp32"), GPU exit 3 when absent) and the demo follows. */
class GpuSettingsTest {
    @Test
    fun fp32AsksLiteRtForFp32AndFp16LeavesItsDefault() {
        assertTrue(GpuSettings.from(mapOf("precision" to "fp32", "fallback" to "cpu")).enforceFp32)
        assertFalse(GpuSettings.from(mapOf("precision" to "fp16", "fallback" to "cpu")).enforceFp32)
    }

    @Test
    fun fallbackNoneMeansNoCpuRun() {
        assertTrue(GpuSettings.from(mapOf("precision" to "fp16", "fallback" to "cpu")).cpuFallback)
        assertFalse(GpuSettings.from(mapOf("precision" to "fp32", "fallback" to "none")).cpuFallback)
    }

    @Test
    fun aRecipeWithoutGpuGetsTheDesktopDefaults() {
        val settings = GpuSettings.from(null)
        assertEquals(GpuSettings("fp16", "cpu", fromRecipe = false), settings)
        assertEquals("LiteRT defaults: fp16 (fallback cpu)", settings.toString())
        assertEquals("fp32 (fallback none)", GpuSettings.from(mapOf("precision" to "fp32", "fallback" to "none"))
            .toString())
    }

    @Test
    fun unknownSettingsAreRefusedWithWhatIsAllowed() {
        val e = assertThrows(IllegalArgumentException::class.java) {
            GpuSettings.from(mapOf("precision" to "int8", "fallback" to "cpu"))
        }
        assertEquals("GPU precision 'int8': expected one of fp16, fp32", e.message)
        assertThrows(IllegalArgumentException::class.java) { GpuSettings.from(mapOf("precision" to "fp16",
            "fallback" to "gpu")) }
    }
}
