package dev.gruedge.demo.parity

import kotlin.math.abs
import kotlin.math.log10
import kotlin.math.max
import kotlin.math.sqrt

data class OutputStats(
    val name: String,
    val count: Int,
    val scale: Double,
    val maxAbsError: Double,
    val maxRelError: Double,
    val psnrDb: Double,
    val failingElements: Int,
)

data class TaskStats(val metric: String, val rows: Int, val reference: Double, val converted: Double,
    val relativeDelta: Double, val classAgreement: Double? = null)

data class ParityReport(
    val passed: Boolean,
    val samples: Int,
    val outputs: List<OutputStats>,
    val task: TaskStats?,
    val failures: List<String>,
    /** The limits applied, and where they came from: every report says what it checked against. */
    val tolerances: Tolerances,
    val tolerancesSource: String,
) {
    val maxAbsError: Double get() = outputs.maxOfOrNull { it.maxAbsError } ?: Double.NaN

    /** The same report with one more failure (so never a PASS). */
    fun withFailure(failure: String): ParityReport = copy(passed = false, failures = failures + failure)
    val psnrDb: Double get() = outputs.minOfOrNull { it.psnrDb } ?: Double.NaN
}

/**
 * The parity check of docs/parity-bundle.md, the same rules as gru-edge's Python `parity.compare`: names, then
 * shapes, then values; every failure listed, one verdict.
 */
object Parity {
    fun compare(
        expected: Map<String, FloatTensor>,
        actual: Map<String, FloatTensor>,
        tol: Tolerances,
        targets: FloatTensor? = null,
        task: TaskSpec? = null,
        source: String = "the bundle's manifest",
    ): ParityReport {
        val failures = mutableListOf<String>()
        val n = expected.values.minOfOrNull { it.rows } ?: 0
        if (n == 0) failures.add("no samples: a parity check needs at least one sample sequence")
        val missing = (expected.keys - actual.keys).sorted()
        if (missing.isNotEmpty()) {
            failures.add("outputs missing from the converted model: ${missing.joinToString(", ")} " +
                "(it has: ${actual.keys.sorted().joinToString(", ").ifEmpty { "none" }})")
        }
        val stats = mutableListOf<OutputStats>()
        for (name in (expected.keys intersect actual.keys).sorted()) {
            val e = expected.getValue(name)
            val a = actual.getValue(name)
            if (!e.shape.contentEquals(a.shape)) {
                failures.add("$name: shape ${a.shape.toList()} differs from the expected ${e.shape.toList()}")
                continue
            }
            if (e.data.isEmpty()) continue
            val badExpected = e.data.count { !it.isFinite() }
            val bad = a.data.count { !it.isFinite() }
            if (badExpected > 0) failures.add("$name: $badExpected non-finite values (NaN/Inf) in the expected outputs")
            if (bad > 0) failures.add("$name: $bad non-finite values (NaN/Inf) in the converted model's outputs")
            if (bad > 0 || badExpected > 0) {
                stats.add(OutputStats(name, e.data.size, Double.NaN, Double.POSITIVE_INFINITY,
                    Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY, bad))
                continue
            }
            val peak = e.data.maxOf { abs(it.toDouble()) }
            val scale = if (peak > 0) peak else 1.0
            var maxErr = 0.0
            var sumSq = 0.0
            var failing = 0
            for (i in e.data.indices) {
                val ev = e.data[i].toDouble()
                val err = abs(a.data[i].toDouble() - ev)
                maxErr = max(maxErr, err)
                sumSq += err * err
                if (err > tol.atol * scale + tol.rtol * abs(ev)) failing++
            }
            val rms = sqrt(sumSq / e.data.size)
            val psnr = if (rms == 0.0) Double.POSITIVE_INFINITY else 20 * log10(scale / rms)
            stats.add(OutputStats(name, e.data.size, scale, maxErr, maxErr / scale, psnr, failing))
            if (failing > 0) {
                failures.add("$name: $failing of ${e.data.size} values outside atol ${tol.atol} x peak " +
                    "${"%.4g".format(scale)} + rtol ${tol.rtol} x |expected| (max abs error ${"%.3g".format(maxErr)})")
            }
            if (psnr < tol.minPsnrDb) {
                failures.add("$name: PSNR ${"%.1f".format(psnr)} dB below the minimum ${tol.minPsnrDb} dB")
            }
        }
        var taskStats: TaskStats? = null
        if (targets != null && task != null && stats.isNotEmpty()) {
            taskStats = task(expected, actual, targets, task)
            if (taskStats != null && taskStats.relativeDelta > tol.maxTaskMetricDelta) {
                failures.add("task metric ${taskStats.metric} worse by ${"%.2f".format(taskStats.relativeDelta * 100)}%" +
                    " (allowed ${"%.2f".format(tol.maxTaskMetricDelta * 100)}%)")
            }
        }
        return ParityReport(failures.isEmpty(), n, stats, taskStats, failures, tol, source)
    }

    private fun task(expected: Map<String, FloatTensor>, actual: Map<String, FloatTensor>, targets: FloatTensor,
        task: TaskSpec): TaskStats? {
        val name = expected.keys.sorted().first()
        val e = expected.getValue(name)
        val a = actual[name] ?: return null
        if (!targets.shape.contentEquals(e.shape) || a.data.any { !it.isFinite() }) return null
        if (task.metric == "accuracy") return accuracy(e, a, targets)
        var rows = 0
        var refSq = 0.0
        var convSq = 0.0
        var count = 0
        for (r in 0 until e.rows) {
            val t = targets.row(r)
            if (t.any { !it.isFinite() }) continue
            rows++
            val er = e.row(r)
            val ar = a.row(r)
            for (j in t.indices) {
                val tv = t[j] * task.scale + task.offset
                val ev = er[j] * task.scale + task.offset
                val av = ar[j] * task.scale + task.offset
                refSq += (ev - tv) * (ev - tv)
                convSq += (av - tv) * (av - tv)
                count++
            }
        }
        if (rows == 0) return null
        val ref = sqrt(refSq / count)
        val conv = sqrt(convSq / count)
        val delta = if (ref > 0) (conv - ref) / ref else if (conv == 0.0) 0.0 else Double.POSITIVE_INFINITY
        return TaskStats(task.metric, rows, ref, conv, delta)
    }

    private fun argmax(row: FloatArray): Int = row.indices.maxByOrNull { row[it] } ?: -1

    /** Classification: accuracy of the argmax on rows with a one-hot target; delta is the relative accuracy lost. */
    private fun accuracy(e: FloatTensor, a: FloatTensor, targets: FloatTensor): TaskStats? {
        var rows = 0
        var refHits = 0
        var convHits = 0
        for (r in 0 until e.rows) {
            val t = targets.row(r)
            if (t.any { !it.isFinite() }) continue
            rows++
            val truth = argmax(t)
            if (argmax(e.row(r)) == truth) refHits++
            if (argmax(a.row(r)) == truth) convHits++
        }
        if (rows == 0) return null
        val ref = refHits.toDouble() / rows
        val conv = convHits.toDouble() / rows
        val delta = if (ref > 0) (ref - conv) / ref else if (conv == ref) 0.0 else Double.POSITIVE_INFINITY
        val agree = (0 until e.rows).count { argmax(e.row(it)) == argmax(a.row(it)) }.toDouble() / e.rows
        return TaskStats("accuracy", rows, ref, conv, delta, agree)
    }
}
