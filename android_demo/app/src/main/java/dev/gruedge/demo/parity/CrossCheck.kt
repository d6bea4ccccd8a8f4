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
        val bundle = Bundle.load { name -> File(dir, name).readBytes() }
        val first = bundle.manifest.outputs.first().name
        val actual = mapOf(first to Npy.read(File(dir, "actual.npy").readBytes(), "actual.npy"))
        val report = Parity.compare(bundle.expected, actual, bundle.manifest.tolerances, bundle.targets,
            bundle.manifest.task)
        val delta = report.task?.relativeDelta?.let { number(it) } ?: "null"
        "{\"bundle\": \"${dir.name}\", \"passed\": ${report.passed}, \"samples\": ${report.samples}, " +
            "\"max_abs_error\": ${number(report.maxAbsError)}, \"failures\": ${report.failures.size}, " +
            "\"task_delta\": $delta}"
    } catch (e: BundleException) {
        "{\"bundle\": \"${dir.name}\", \"error\": \"${e.message?.replace("\"", "'")}\"}"
    }

    private fun number(x: Double): String = if (x.isFinite()) x.toString() else "null"
}
