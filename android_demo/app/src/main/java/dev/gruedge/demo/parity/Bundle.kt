package dev.gruedge.demo.parity

class BundleException(message: String) : Exception(message)

data class Tolerances(val atol: Double, val rtol: Double, val minPsnrDb: Double, val maxTaskMetricDelta: Double)

data class TensorSpec(val name: String, val file: String, val shape: IntArray)

data class TaskSpec(
    val kind: String,
    val metric: String,
    val targetsFile: String,
    val scale: Double,
    val offset: Double,
    val reference: Double?,
)

data class Manifest(
    val format: String,
    val modelFile: String,
    val modelSha256: String,
    val recipe: String,
    val signature: String,
    val gpuPrecision: String?,
    val input: TensorSpec,
    val outputs: List<TensorSpec>,
    val tolerances: Tolerances,
    val task: TaskSpec?,
)

/** A parity bundle (format `gru-edge-parity/1`, docs/parity-bundle.md): manifest plus its arrays. */
class Bundle(
    val manifest: Manifest,
    val inputs: FloatTensor,
    val expected: Map<String, FloatTensor>,
    val targets: FloatTensor?,
) {
    companion object {
        const val FORMAT = "gru-edge-parity/1"
        private val REQUIRED = listOf("format", "model", "inputs", "outputs", "samples", "tolerances")

        /** Reads a bundle through [read], which returns a file's bytes by its name inside the bundle folder. */
        fun load(read: (String) -> ByteArray): Bundle {
            val manifest = parseManifest(String(readFile(read, "manifest.json", "the manifest"), Charsets.UTF_8))
            val inputs = loadNpy(read, manifest.input.file, "inputs")
            if (!inputs.shape.contentEquals(manifest.input.shape) || inputs.shape.size != 3) {
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

        fun parseManifest(text: String): Manifest {
            val root = try {
                Json.parse(text) as? Map<*, *> ?: throw BundleException("manifest.json is not a JSON object")
            } catch (e: JsonException) {
                throw BundleException("manifest.json is not valid JSON: ${e.message}")
            }
            val missing = REQUIRED.filter { it !in root }
            if (missing.isNotEmpty()) {
                throw BundleException("manifest.json misses required key(s): ${missing.joinToString(", ")}")
            }
            val format = root["format"] as? String
            if (format != FORMAT) throw BundleException("manifest.json: format '$format' is not supported; " +
                "expected '$FORMAT'")
            val model = obj(root["model"], "model")
            val tol = obj(root["tolerances"], "tolerances")
            val tolKeys = setOf("atol", "rtol", "min_psnr_db", "max_task_metric_delta")
            if (tol.keys != tolKeys) {
                throw BundleException("manifest.json: tolerances must have exactly ${tolKeys.sorted().joinToString(", ")}")
            }
            val gpu = model["gpu"] as? Map<*, *>
            val task = (root["task"] as? Map<*, *>)?.let {
                TaskSpec(str(it, "kind"), str(it, "metric"), str(it, "targets"), num(it, "output_scale", 1.0),
                    num(it, "output_offset", 0.0), (it["reference"] as? Double))
            }
            return Manifest(
                format = format,
                modelFile = str(model, "file"),
                modelSha256 = str(model, "sha256"),
                recipe = str(model, "recipe"),
                signature = (model["signature"] as? String) ?: "serving_default",
                gpuPrecision = gpu?.get("precision") as? String,
                input = spec((root["inputs"] as List<*>).first()),
                outputs = (root["outputs"] as List<*>).map { spec(it) },
                tolerances = Tolerances(num(tol, "atol"), num(tol, "rtol"), num(tol, "min_psnr_db"),
                    num(tol, "max_task_metric_delta")),
                task = task,
            )
        }

        private fun obj(value: Any?, key: String): Map<*, *> =
            value as? Map<*, *> ?: throw BundleException("manifest.json: '$key' must be an object")

        private fun str(map: Map<*, *>, key: String): String =
            map[key] as? String ?: throw BundleException("manifest.json: '$key' must be a string")

        private fun num(map: Map<*, *>, key: String, default: Double? = null): Double =
            (map[key] as? Double) ?: default ?: throw BundleException("manifest.json: '$key' must be a number")

        private fun spec(value: Any?): TensorSpec {
            val m = obj(value, "inputs/outputs entry")
            val shape = (m["shape"] as? List<*>)?.map { (it as Double).toInt() }?.toIntArray()
                ?: throw BundleException("manifest.json: a tensor entry has no shape")
            return TensorSpec(str(m, "name"), str(m, "file"), shape)
        }
    }
}
