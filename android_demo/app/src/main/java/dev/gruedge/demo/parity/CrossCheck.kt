package dev.gruedge.demo.parity

import java.io.File

/**
 * Command-line entry for the JVM cross-check against Python: for each bundle folder given, read the bundle and the
 * converted model's outputs from `actual.npy` beside it, and print one JSON line with the verdict and figures
 * (or the error that made the bundle unreadable).
 */
object CrossCheck {
    @JvmStatic
    fun main(args: Array<String>) {
        for (path in args) println(check(File(path)))
    }

    fun check(dir: File): String = try {
        val bundle = Bundle.loadDir(dir)
        val first = bundle.manifest.outputs.first().name
        val actual = mapOf(first to Npy.read(File(dir, "actual.npy").readBytes(), "actual.npy"))
        val report = Parity.compare(bundle.expected, actual, bundle.manifest.tolerances, bundle.targets,
            bundle.manifest.task)
        val delta = report.task?.relativeDelta?.let { number(it) } ?: "null"
        val reference = report.task?.reference?.let { number(it) } ?: "null"
        val units = bundle.manifest.task?.units?.let { quote(it) } ?: "null"
        val t = report.tolerances
        "{\"bundle\": ${quote(dir.name)}, \"passed\": ${report.passed}, \"samples\": ${report.samples}, " +
            "\"max_abs_error\": ${number(report.maxAbsError)}, \"failures\": ${report.failures.size}, " +
            "\"task_delta\": $delta, \"task_reference\": $reference, \"task_units\": $units, " +
            "\"tolerances\": {\"atol\": ${t.atol}, \"rtol\": ${t.rtol}, " +
            "\"min_psnr_db\": ${t.minPsnrDb}, \"max_task_metric_delta\": ${t.maxTaskMetricDelta}}, " +
            "\"limits\": ${quote("${report.tolerances} (from ${report.tolerancesSource})")}}"
    } catch (e: BundleException) {
        error(dir, e.message)
    } catch (e: Exception) { // a reader bug must still give one line, never a stack trace; the test flags it
        error(dir, "${e.javaClass.simpleName}: ${e.message}", internal = true)
    }

    private fun error(dir: File, message: String?, internal: Boolean = false): String =
        "{\"bundle\": ${quote(dir.name)}, \"error\": ${quote(message ?: "")}, \"internal\": $internal}"

    /** A JSON string literal: quotes, backslashes and control characters escaped. */
    private fun quote(s: String): String = buildString {
        append('"')
        for (c in s) {
            when {
                c == '"' || c == '\\' -> append('\\').append(c)
                c < ' ' -> append("\\u%04x".format(c.code))
                else -> append(c)
            }
        }
        append('"')
    }

    private fun number(x: Double): String = if (x.isFinite()) x.toString() else "null"
}
