package dev.gruedge.demo.parity

import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.FileNotFoundException

class BundleTest {
    private val manifest = """
        {"format": "gru-edge-parity/1", "tool": "gru-edge 0.1.0",
         "model": {"file": "m.tflite", "sha256": "${"ab".repeat(32)}", "recipe": "float32", "signature": "serving_default",
                   "gpu": {"precision": "fp16", "fallback": "cpu"}},
         "inputs": [{"name": "sequence", "file": "inputs.npy", "shape": [2, 3, 1], "dtype": "float32"}],
         "outputs": [{"name": "forecast", "file": "expected.npy", "shape": [2, 1], "dtype": "float32"}],
         "samples": {"count": 2, "kinds": {"heldout": 2}, "source": "test"},
         "tolerances": {"atol": 1e-3, "rtol": 1e-3, "min_psnr_db": 40.0, "max_task_metric_delta": 0.01},
         "task": null}
    """.trimIndent()

    private fun files(m: String = manifest, expected: ByteArray = TestNpy.bytes(intArrayOf(2, 1), floatArrayOf(1f, 2f)))
        : (String) -> ByteArray = { name ->
        when (name) {
            "manifest.json" -> m.toByteArray()
            "inputs.npy" -> TestNpy.bytes(intArrayOf(2, 3, 1), FloatArray(6) { it.toFloat() })
            "expected.npy" -> expected
            else -> throw FileNotFoundException(name)
        }
    }

    @Test
    fun readsAValidBundle() {
        val b = Bundle.load(files())
        assertEquals("float32", b.manifest.recipe)
        assertEquals("fp16", b.manifest.gpuPrecision)
        assertEquals(2, b.inputs.rows)
        assertEquals(0.01, b.manifest.tolerances.maxTaskMetricDelta, 0.0)
    }

    @Test
    fun missingKeyIsNamed() {
        val e = assertThrows(BundleException::class.java) {
            Bundle.load(files(manifest.replace("\"tolerances\"", "\"limits\"")))
        }
        assertEquals("manifest.json misses required key(s): tolerances", e.message)
    }

    @Test
    fun shapeMismatchIsNamed() {
        val e = assertThrows(BundleException::class.java) {
            Bundle.load(files(expected = TestNpy.bytes(intArrayOf(3, 1), floatArrayOf(1f, 2f, 3f))))
        }
        assertTrue(e.message!!, e.message!!.startsWith("expected.npy has shape [3, 1]"))
    }

    @Test
    fun missingFileIsNamed() {
        val e = assertThrows(BundleException::class.java) {
            Bundle.load(files(manifest.replace("\"task\": null", "\"task\": {\"kind\": \"regression\", " +
                "\"metric\": \"rmse\", \"targets\": \"targets.npy\"}")))
        }
        assertEquals("Bundle file missing: targets.npy (targets)", e.message)
    }

    @Test
    fun limitsThatWouldPassAnythingAreRefused() {
        for (bad in listOf("1e9", "-1", "0.5", "true", "\"0.1\"", "1${"0".repeat(400)}")) {
            val e = assertThrows(BundleException::class.java) {
                Bundle.load(files(manifest.replace("\"atol\": 1e-3", "\"atol\": $bad")))
            }
            assertTrue(e.message!!, e.message!!.contains("tolerance atol must be a finite number from 0 up to (not " +
                "including) 0.5"))
        }
        assertThrows(BundleException::class.java) { Bundle.load(files(manifest.replace("1e-3, \"rtol\"", "NaN, \"rtol\""))) }
    }

    @Test
    fun fileNamesStayInsideTheBundle() {
        for (bad in listOf("../inputs.npy", "/etc/passwd", "sub/inputs.npy", ".hidden", "")) {
            val e = assertThrows(BundleException::class.java) {
                Bundle.load(files(manifest.replace("\"file\": \"inputs.npy\"", "\"file\": \"$bad\"")))
            }
            assertTrue(e.message!!, e.message!!.contains("is not a plain file name"))
        }
    }

    @Test
    fun malformedShapesAreRefusedNotCrashed() {
        for ((from, to) in listOf("\"inputs\": [" to "\"inputs\": [], \"x\": [", "\"outputs\": [" to
            "\"outputs\": {}, \"x\": [", "\"shape\": [2, 3, 1]" to "\"shape\": [2.0, 3, 1]",
            "\"tolerances\": {" to "\"tolerances\": 3, \"x\": {")) {
            assertThrows(BundleException::class.java) { Bundle.load(files(manifest.replace(from, to))) }
        }
    }

    @Test
    fun deepNestingIsRefused() {
        val deep = manifest.replace("\"task\": null", "\"task\": null, \"x\": ${"[".repeat(200_000)}${"]".repeat(200_000)}")
        val e = assertThrows(BundleException::class.java) { Bundle.load(files(deep)) }
        assertEquals("manifest.json nests deeper than 16 levels", e.message)
    }

    @Test
    fun sha256IsTheManifestsHexForm() {
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            Bundle.sha256("abc".toByteArray()))
    }

    @Test
    fun aFailureAddedToAPassingReportMakesItFail() {
        val e = TestNpy.tensor(2, 1) { r, _ -> r.toFloat() }
        val report = Parity.compare(mapOf("y" to e), mapOf("y" to e), Tolerances(1e-3, 1e-3, 40.0, 0.01))
        val failed = report.withFailure("model.tflite is not the model this bundle was made with")
        assertTrue(report.passed)
        assertEquals(false, failed.passed)
        assertEquals(listOf("model.tflite is not the model this bundle was made with"), failed.failures)
    }

    @Test
    fun wrongFormatIsRefused() {
        val e = assertThrows(BundleException::class.java) {
            Bundle.load(files(manifest.replace("gru-edge-parity/1", "other/2")))
        }
        assertTrue(e.message!!.contains("format 'other/2' is not supported"))
    }
}
