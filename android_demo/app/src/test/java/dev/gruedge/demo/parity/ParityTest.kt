package dev.gruedge.demo.parity

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

class ParityTest {
    private val tol = Tolerances(atol = 1e-3, rtol = 1e-3, minPsnrDb = 40.0, maxTaskMetricDelta = 0.01)
    private val expected = TestNpy.tensor(10, 2) { r, c -> (r - 4.5f) * (c + 1) * 0.1f }

    @Test
    fun identicalOutputsPassExactly() {
        val report = Parity.compare(mapOf("y" to expected), mapOf("y" to expected), tol)
        assertTrue(report.passed)
        assertEquals(0.0, report.maxAbsError, 0.0)
        assertEquals(Double.POSITIVE_INFINITY, report.psnrDb, 0.0)
    }

    @Test
    fun toleranceIsRelativeToThePeak() {
        val big = TestNpy.tensor(10, 2) { r, c -> expected.data[r * 2 + c] * 1000f }
        val near = TestNpy.tensor(10, 2) { r, c -> big.data[r * 2 + c] + 0.5f }  // 0.5 of a peak ~ 900
        assertTrue(Parity.compare(mapOf("y" to big), mapOf("y" to near), tol).passed)
        val far = TestNpy.tensor(10, 2) { r, c -> big.data[r * 2 + c] + 5f }
        assertFalse(Parity.compare(mapOf("y" to big), mapOf("y" to far), tol).passed)
    }

    @Test
    fun zeroSamplesNeverPass() {
        val empty = FloatTensor(intArrayOf(0, 2), FloatArray(0))
        val report = Parity.compare(mapOf("y" to empty), mapOf("y" to empty), tol)
        assertFalse(report.passed)
        assertTrue(report.failures.first().startsWith("no samples"))
    }

    @Test
    fun nanOutputsFail() {
        val nan = TestNpy.tensor(10, 2) { r, c -> if (r == 3) Float.NaN else expected.data[r * 2 + c] }
        val report = Parity.compare(mapOf("y" to expected), mapOf("y" to nan), tol)
        assertFalse(report.passed)
        assertTrue(report.failures.contains("y: 2 non-finite values (NaN/Inf) in the converted model's outputs"))
    }

    @Test
    fun everyFailingOutputIsListed() {
        val off = TestNpy.tensor(10, 2) { r, c -> expected.data[r * 2 + c] + 1f }
        val report = Parity.compare(mapOf("a" to expected, "b" to expected), mapOf("a" to off, "b" to off), tol)
        assertTrue(report.failures.any { it.startsWith("a: 20 of 20 values outside") })
        assertTrue(report.failures.any { it.startsWith("b: 20 of 20 values outside") })
    }

    @Test
    fun shapeMismatchAndMissingOutputsFail() {
        val narrow = TestNpy.tensor(10, 1) { _, _ -> 0f }
        assertTrue(Parity.compare(mapOf("y" to expected), mapOf("y" to narrow), tol).failures
            .contains("y: shape [10, 1] differs from the expected [10, 2]"))
        assertTrue(Parity.compare(mapOf("y" to expected), mapOf("z" to expected), tol).failures
            .first().startsWith("outputs missing"))
    }

    @Test
    fun taskMetricUsesRowsWithTargetsOnly() {
        val targets = TestNpy.tensor(10, 2) { r, c -> if (r >= 8) Float.NaN else expected.data[r * 2 + c] + 0.1f }
        val worse = TestNpy.tensor(10, 2) { r, c -> expected.data[r * 2 + c] - 0.05f }
        val task = TaskSpec("regression", "rmse", "targets.npy", 2.0, 5.0, null)
        val report = Parity.compare(mapOf("y" to expected), mapOf("y" to worse), Tolerances(1.0, 1.0, 0.0, 0.01),
            targets, task)
        assertEquals(8, report.task!!.rows)
        assertEquals(0.2, report.task!!.reference, 1e-5)
        assertEquals(0.3, report.task!!.converted, 1e-5)
        assertEquals(0.5, report.task!!.relativeDelta, 1e-4)
        assertFalse(report.passed)
    }

    @Test
    fun accuracyCountsArgmaxOnRowsWithTargets() {
        val probs = TestNpy.tensor(4, 3) { r, c -> if (c == r % 3) 0.8f else 0.1f }
        val targets = TestNpy.tensor(4, 3) { r, c -> if (r == 3) Float.NaN else if (c == r % 3) 1f else 0f }
        val flipped = TestNpy.tensor(4, 3) { r, c -> if (r == 0) (if (c == 1) 0.8f else 0.1f) else probs.data[r * 3 + c] }
        val task = TaskSpec("classification", "accuracy", "targets.npy", 1.0, 0.0, null)
        val report = Parity.compare(mapOf("p" to probs), mapOf("p" to flipped), Tolerances(1.0, 1.0, 0.0, 0.01),
            targets, task)
        assertEquals(3, report.task!!.rows)
        assertEquals(1.0, report.task!!.reference, 1e-12)
        assertEquals(2.0 / 3, report.task!!.converted, 1e-12)
        assertEquals(0.75, report.task!!.classAgreement!!, 1e-12)
        assertFalse(report.passed)
    }
}
