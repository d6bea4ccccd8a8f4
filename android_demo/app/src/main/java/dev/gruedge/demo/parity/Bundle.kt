package dev.gruedge.demo.parity

import java.io.File
import java.nio.file.Files

class BundleException(message: String) : Exception(message)

/** Parity limits; each must be finite and within [RANGES] (docs/parity-bundle.md). */
data class Tolerances(val atol: Double, val rtol: Double, val minPsnrDb: Double, val maxTaskMetricDelta: Double) {
    companion object {
        /** Each limit's range, from the first value up to (not including) the second. */
        val RANGES = linkedMapOf("atol" to (0.0 to 0.5), "rtol" to (0.0 to 0.5), "min_psnr_db" to (0.0 to 200.0),
            "max_task_metric_delta" to (0.0 to 1.0))
    }

    override fun toString(): String = "|error| <= ${fmt(atol)} x peak + ${fmt(rtol)} x |expected|, PSNR >= " +
        "${fmt(minPsnrDb)} dB, task metric worse by <= ${"%.2f".format(maxTaskMetricDelta * 100)}%"

    private fun fmt(x: Double) = "%g".format(x).let { if ('.' in it && 'e' !in it) it.trimEnd('0').trimEnd('.') else it }
}

data class TensorSpec(val name: String, val file: String, val shape: IntArray)

data class TaskSpec(
    val kind: String,
    val metric: String,
    val targetsFile: String,
    val scale: Double,
    val offset: Double,
    val reference: Double?,
    /** What the metric is measured in, e.g. "data units: passengers" (gru-edge models return the data's units). */
    val units: String = "model output",
)

data class Manifest(
    val format: String,
    val modelFile: String,
    val modelSha256: String,
    val recipe: String,
    val signature: String,
    val gpuPrecision: String?,
    val gpuFallback: String?,
    val input: TensorSpec,
    val outputs: List<TensorSpec>,
    val tolerances: Tolerances,
    val task: TaskSpec?,
)

/**
 * A parity bundle (format `gru-edge-parity/1`, docs/parity-bundle.md): manifest plus its arrays. The reader contract
 * is the same as gru_edge/bundle.py's: the same bundles are accepted and refused (tests/test_kotlin_parity.py).
 */
class Bundle(
    val manifest: Manifest,
    val inputs: FloatTensor,
    val expected: Map<String, FloatTensor>,
    val targets: FloatTensor?,
) {
    companion object {
        const val FORMAT = "gru-edge-parity/1"
        const val MAX_MANIFEST_BYTES = 1 shl 20
        const val MAX_DEPTH = 16
        const val MAX_FILE_BYTES = 1L shl 30
        private val REQUIRED = listOf("format", "model", "inputs", "outputs", "samples", "tolerances")
        private val FILE_NAME = Regex("[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
        private val SHA256 = Regex("[0-9a-f]{64}")
        private val TASKS = mapOf("regression" to "rmse", "classification" to "accuracy")

        /**
         * Reads a bundle folder on a file system: every file the manifest names must be a regular file inside the
         * folder (no symbolic links) of at most [MAX_FILE_BYTES], checked before it is read.
         */
        fun loadDir(dir: File): Bundle = load { name ->
            val f = File(dir, name)
            if (Files.isSymbolicLink(f.toPath())) throw BundleException("Bundle file $name is a symbolic link; a " +
                "bundle's files stay inside it")
            if (!f.isFile) throw java.io.IOException(name)
            if (f.length() > MAX_FILE_BYTES) throw BundleException("Bundle file $name is ${f.length()} bytes; at " +
                "most $MAX_FILE_BYTES are read")
            if (name != "manifest.json" && name.endsWith(".npy")) checkNpySize(f)
            f.readBytes()
        }

        /** The lowercase hexadecimal SHA-256 of [bytes], as `model.sha256` in a manifest. */
        fun sha256(bytes: ByteArray): String =
            java.security.MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }

        /** A `.npy` file's declared size is checked against the file before its bytes are read into memory. */
        private fun checkNpySize(f: File) {
            val head = f.inputStream().use { it.readNBytes(10 + 65535) }
            try {
                Npy.header(head, f.length(), f.name)
            } catch (e: NpyException) {
                throw BundleException(e.message ?: "unreadable ${f.name}")
            }
        }

        /** Reads a bundle through [read], which returns a file's bytes by its name inside the bundle folder. */
        fun load(read: (String) -> ByteArray): Bundle {
            val raw = readFile(read, "manifest.json", "the manifest")
            if (raw.size > MAX_MANIFEST_BYTES) {
                throw BundleException("manifest.json is ${raw.size} bytes; at most $MAX_MANIFEST_BYTES are read")
            }
            val manifest = parseManifest(raw)
            val inputs = loadNpy(read, manifest.input.file, "inputs")
            if (!inputs.shape.contentEquals(manifest.input.shape)) {
                throw BundleException("${manifest.input.file} has shape ${inputs.shape.toList()}; the manifest " +
                    "says ${manifest.input.shape.toList()} ([N, T, F])")
            }
            val expected = LinkedHashMap<String, FloatTensor>()
            for (spec in manifest.outputs) {
                val arr = loadNpy(read, spec.file, "expected output ${spec.name}")
                if (!arr.shape.contentEquals(spec.shape) || arr.rows != inputs.rows) {
                    throw BundleException("${spec.file} has shape ${arr.shape.toList()}; the manifest says " +
                        "${spec.shape.toList()} with N = ${inputs.rows} samples")
                }
                expected[spec.name] = arr
            }
            val targets = manifest.task?.let { task ->
                val t = loadNpy(read, task.targetsFile, "targets")
                val first = expected.values.first()
                if (!t.shape.contentEquals(first.shape)) {
                    throw BundleException("${task.targetsFile} has shape ${t.shape.toList()}; expected " +
                        "${first.shape.toList()}")
                }
                t
            }
            return Bundle(manifest, inputs, expected, targets)
        }

        private fun readFile(read: (String) -> ByteArray, name: String, what: String): ByteArray = try {
            read(name)
        } catch (e: java.io.IOException) {
            throw BundleException("Bundle file missing: $name ($what)")
        }

        private fun loadNpy(read: (String) -> ByteArray, name: String, what: String): FloatTensor = try {
            Npy.read(readFile(read, name, what), name)
        } catch (e: NpyException) {
            throw BundleException(e.message ?: "unreadable $name")
        }

        fun parseManifest(raw: ByteArray): Manifest {
            val doc = try {
                Json.parse(raw, MAX_DEPTH)
            } catch (e: JsonException) {
                if (e.message?.startsWith("nesting") == true) {
                    throw BundleException("manifest.json nests deeper than $MAX_DEPTH levels")
                }
                throw BundleException("manifest.json is not valid JSON: ${e.message}")
            }
            val root = obj(doc, "the manifest")
            val missing = REQUIRED.filter { it !in root }
            if (missing.isNotEmpty()) {
                throw BundleException("manifest.json misses required key(s): ${missing.joinToString(", ")}")
            }
            val format = root["format"]
            if (format != FORMAT) throw BundleException("manifest.json: format '$format' is not supported; " +
                "expected '$FORMAT'")
            val model = obj(root["model"], "model")
            val file = name(model, "file")
            val sha = model["sha256"] as? String
            if (sha == null || !SHA256.matches(sha)) {
                throw BundleException("manifest.json: 'model.sha256' must be 64 lowercase hexadecimal digits")
            }
            val recipe = text(model, "recipe")
            val signature = if (model["signature"] == null && "signature" !in model) "serving_default"
            else text(model, "signature")
            var precision: String? = null
            var fallback: String? = null
            if (model["gpu"] != null) {
                val gpu = obj(model["gpu"], "model.gpu")
                precision = gpu["precision"] as? String
                fallback = gpu["fallback"] as? String
                if (precision !in listOf("fp16", "fp32")) fail("'model.gpu.precision' must be one of fp16, fp32")
                if (fallback !in listOf("cpu", "none")) fail("'model.gpu.fallback' must be one of cpu, none")
            }
            val inputs = entries(root["inputs"], "inputs")
            val outputs = entries(root["outputs"], "outputs")
            if (inputs.size != 1 || outputs.isEmpty()) {
                fail("'inputs' must list exactly one tensor and 'outputs' at least one")
            }
            if (inputs[0].shape.size != 3 || outputs.any { it.shape.size != 2 }) {
                fail("the input's shape must be [N, T, F] and each output's [N, O]")
            }
            if (outputs.map { it.name }.toSet().size != outputs.size) fail("output names repeat")
            obj(root["samples"], "samples")
            val tolerances = tolerances(root["tolerances"])
            val task = if (root["task"] == null) null else {
                val t = obj(root["task"], "task")
                val kind = t["kind"] as? String
                if (kind == null || TASKS[kind] != t["metric"]) {
                    fail("'task' must have kind regression with metric rmse, or kind classification with metric " +
                        "accuracy")
                }
                val targets = name(t, "targets")
                val scale = if ("output_scale" in t) number(t["output_scale"], "task.output_scale") else 1.0
                val offset = if ("output_offset" in t) number(t["output_offset"], "task.output_offset") else 0.0
                val reference = t["reference"]?.let { number(it, "task.reference") }
                TaskSpec(kind, TASKS.getValue(kind), targets, scale, offset, reference,
                    t["units"] as? String ?: "model output")
            }
            return Manifest(FORMAT, file, sha, recipe, signature, precision, fallback, inputs[0], outputs, tolerances,
                task)
        }

        /** The four limits, each a finite number within its range; anything else is refused (never a pass). */
        fun tolerances(value: Any?): Tolerances {
            val tol = value as? Map<*, *>
            if (tol == null || tol.keys != Tolerances.RANGES.keys) {
                fail("tolerances must have exactly ${Tolerances.RANGES.keys.sorted().joinToString(", ")}")
            }
            val v = Tolerances.RANGES.map { (key, range) ->
                val x = (tol[key] as? Number)?.toDouble()
                if (tol[key] is Boolean || x == null || !x.isFinite() || x < range.first || x >= range.second) {
                    fail("tolerance $key must be a finite number from ${g(range.first)} up to (not including) " +
                        "${g(range.second)}, got ${tol[key].toString().take(40)}")
                }
                x
            }
            return Tolerances(v[0], v[1], v[2], v[3])
        }

        private fun g(x: Double) = if (x == Math.floor(x)) x.toLong().toString() else x.toString()

        private fun fail(what: String): Nothing = throw BundleException("manifest.json: $what")

        private fun obj(value: Any?, key: String): Map<*, *> = value as? Map<*, *> ?: fail("'$key' must be an object")

        private fun text(map: Map<*, *>, key: String): String =
            (map[key] as? String)?.takeIf { it.isNotEmpty() } ?: fail("'$key' must be a non-empty string")

        private fun name(map: Map<*, *>, key: String): String {
            val value = map[key] as? String
            if (value == null || !FILE_NAME.matches(value)) {
                fail("'$key' ${map[key]} is not a plain file name (letters, digits, '.', '_', '-'; no folders): a " +
                    "bundle's files stay inside the bundle")
            }
            return value
        }

        private fun number(value: Any?, what: String): Double {
            val x = (value as? Number)?.toDouble()
            if (x == null || !x.isFinite()) fail("'$what' must be a finite number")
            return x
        }

        private fun entries(value: Any?, what: String): List<TensorSpec> {
            val list = value as? List<*> ?: fail("'$what' must be a list of tensor entries")
            return list.map {
                val m = obj(it, "$what entry")
                val tensorName = text(m, "name")
                val file = name(m, "file")
                val dims = m["shape"] as? List<*>
                if (dims == null || !dims.all { d -> d is Long && d >= 0 && d <= Int.MAX_VALUE }) {
                    fail("a '$what' entry's shape must be a list of integers from 0 to 2147483647")
                }
                if ("dtype" in m && m["dtype"] != "float32") fail("a '$what' entry's dtype must be float32")
                TensorSpec(tensorName, file, dims.map { d -> (d as Long).toInt() }.toIntArray())
            }
        }
    }
}
