package dev.gruedge.demo.parity

import java.nio.ByteBuffer
import java.nio.ByteOrder

/** A float32 array read from a `.npy` file: its shape and its values in C (row-major) order. */
class FloatTensor(val shape: IntArray, val data: FloatArray) {
    val rows: Int get() = if (shape.isEmpty()) 1 else shape[0]
    val rowSize: Int get() = if (shape.isEmpty()) 1 else shape.drop(1).fold(1) { a, b -> a * b }

    fun row(i: Int): FloatArray = data.copyOfRange(i * rowSize, (i + 1) * rowSize)
}

class NpyException(message: String) : Exception(message)

/**
 * Reader for NumPy's `.npy` format version 1.0, dtype `<f4`, C order: what gru-edge's parity bundles hold.
 * Anything else is refused with a message naming what was found and what is allowed.
 */
object Npy {
    private val MAGIC = byteArrayOf(0x93.toByte(), 'N'.code.toByte(), 'U'.code.toByte(), 'M'.code.toByte(),
        'P'.code.toByte(), 'Y'.code.toByte())

    fun read(bytes: ByteArray, name: String = "array.npy"): FloatTensor {
        if (bytes.size < 10 || !bytes.copyOfRange(0, 6).contentEquals(MAGIC)) {
            throw NpyException("$name is not a .npy file (no \\x93NUMPY magic)")
        }
        val major = bytes[6].toInt()
        val minor = bytes[7].toInt()
        if (major != 1 || minor != 0) {
            throw NpyException("$name is .npy format $major.$minor; only format 1.0 is supported")
        }
        val headerLength = (bytes[8].toInt() and 0xff) or ((bytes[9].toInt() and 0xff) shl 8)
        val dataStart = 10 + headerLength
        if (bytes.size < dataStart) throw NpyException("$name is truncated inside its header")
        val header = String(bytes, 10, headerLength, Charsets.ISO_8859_1)
        val descr = field(header, "descr", name)
        if (descr != "'<f4'") throw NpyException("$name has dtype $descr; a parity bundle stores '<f4' (float32)")
        if (field(header, "fortran_order", name) != "False") {
            throw NpyException("$name is in Fortran order; only C order is supported")
        }
        val shape = parseShape(field(header, "shape", name), name)
        val count = shape.fold(1L) { a, b -> a * b }
        val available = (bytes.size - dataStart).toLong()
        if (available < count * 4) {
            throw NpyException("$name is truncated: shape ${shape.contentToString()} needs ${count * 4} bytes of " +
                "data, found $available")
        }
        val buffer = ByteBuffer.wrap(bytes, dataStart, (count * 4).toInt()).order(ByteOrder.LITTLE_ENDIAN)
        val data = FloatArray(count.toInt()) { buffer.getFloat() }
        return FloatTensor(shape, data)
    }

    private fun field(header: String, key: String, name: String): String {
        val start = header.indexOf("'$key':")
        if (start < 0) throw NpyException("$name header has no '$key'")
        var i = start + key.length + 3
        while (i < header.length && header[i] == ' ') i++
        val end = if (header[i] == '(') header.indexOf(')', i) + 1 else header.indexOf(',', i).let {
            if (it < 0) header.indexOf('}', i) else it
        }
        return header.substring(i, end).trim()
    }

    private fun parseShape(text: String, name: String): IntArray {
        val inner = text.removePrefix("(").removeSuffix(")")
        return try {
            inner.split(',').map { it.trim() }.filter { it.isNotEmpty() }.map { it.toInt() }.toIntArray()
        } catch (e: NumberFormatException) {
            throw NpyException("$name has an unreadable shape $text")
        }
    }
}
