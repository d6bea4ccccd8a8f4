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
 * Reader for NumPy's `.npy` format version 1.0, dtype `<f4`, C order: what gru-edge's parity bundles hold. The header
 * is read with the grammar of docs/parity-bundle.md (the same as gru_edge/bundle.py): a dict of exactly `descr`,
 * `fortran_order` and `shape`; the data must be exactly as long as the shape says. Anything else is refused with a
 * message naming what was found and what is allowed.
 */
object Npy {
    private val MAGIC = byteArrayOf(0x93.toByte(), 'N'.code.toByte(), 'U'.code.toByte(), 'M'.code.toByte(),
        'P'.code.toByte(), 'Y'.code.toByte())

    /** The shape a `.npy` file declares and where its data starts, checked against the file's [size] in bytes. */
    fun header(head: ByteArray, size: Long, name: String): Pair<IntArray, Int> {
        if (head.size < 10 || !head.copyOfRange(0, 6).contentEquals(MAGIC)) {
            throw NpyException("$name is not a .npy file (no \\x93NUMPY magic)")
        }
        val major = head[6].toInt()
        val minor = head[7].toInt()
        if (major != 1 || minor != 0) {
            throw NpyException("$name is .npy format $major.$minor; only format 1.0 is read")
        }
        val headerLength = (head[8].toInt() and 0xff) or ((head[9].toInt() and 0xff) shl 8)
        val dataStart = 10 + headerLength
        if (head.size < dataStart) throw NpyException("$name has an unreadable .npy header (truncated)")
        val fields = HeaderParser(String(head, 10, headerLength, Charsets.ISO_8859_1), name).dict()
        if (fields.keys != setOf("descr", "fortran_order", "shape")) {
            throw NpyException("$name has an unreadable .npy header (keys ${fields.keys.sorted()})")
        }
        val descr = fields["descr"]
        if (descr != "<f4") throw NpyException("$name has dtype $descr; a parity bundle stores little-endian " +
            "float32 (<f4)")
        if (fields["fortran_order"] != false) {
            throw NpyException("$name is in Fortran order; a parity bundle stores C order")
        }
        @Suppress("UNCHECKED_CAST")
        val dims = fields["shape"] as? List<Long> ?: throw NpyException("$name has an unreadable .npy header (shape)")
        if (dims.any { it > Int.MAX_VALUE }) throw NpyException("$name declares a dimension past 2147483647")
        val shape = dims.map { it.toInt() }.toIntArray()
        val count = dims.fold(1.toBigInteger()) { a, b -> a * b.toBigInteger() }
        val needed = count * 4.toBigInteger()
        val found = size - dataStart
        if (needed != found.toBigInteger()) {
            throw NpyException("$name is truncated or padded: shape ${shape.toList()} needs $needed bytes of data, " +
                "the file has $found")
        }
        return shape to dataStart
    }

    fun read(bytes: ByteArray, name: String = "array.npy"): FloatTensor {
        val (shape, dataStart) = header(bytes, bytes.size.toLong(), name)
        val count = (bytes.size - dataStart) / 4
        val buffer = ByteBuffer.wrap(bytes, dataStart, count * 4).order(ByteOrder.LITTLE_ENDIAN)
        return FloatTensor(shape, FloatArray(count) { buffer.getFloat() })
    }

    /** The header's Python-literal dict: string keys; values are strings, True/False, or tuples of integers. */
    private class HeaderParser(private val text: String, private val name: String) {
        private var pos = 0

        private fun fail(): Nothing = throw NpyException("$name has an unreadable .npy header")

        private fun space() {
            while (pos < text.length && text[pos] in " \t\n\r") pos++
        }

        private fun eat(c: Char): Boolean {
            space()
            if (pos < text.length && text[pos] == c) {
                pos++
                return true
            }
            return false
        }

        fun dict(): Map<String, Any> {
            val out = LinkedHashMap<String, Any>()
            if (!eat('{')) fail()
            while (!eat('}')) {
                val key = string()
                if (!eat(':')) fail()
                out[key] = value()
                if (!eat(',')) {
                    if (!eat('}')) fail()
                    break
                }
            }
            space()
            if (pos != text.length) fail()
            return out
        }

        private fun string(): String {
            space()
            val quote = text.getOrNull(pos) ?: fail()
            if (quote != '\'' && quote != '"') fail()
            val end = text.indexOf(quote, pos + 1)
            if (end < 0) fail()
            val s = text.substring(pos + 1, end)
            if ('\\' in s) fail()
            pos = end + 1
            return s
        }

        private fun value(): Any {
            space()
            return when {
                text.startsWith("True", pos) -> true.also { pos += 4 }
                text.startsWith("False", pos) -> false.also { pos += 5 }
                text.getOrNull(pos) == '(' -> tuple()
                else -> string()
            }
        }

        private fun tuple(): List<Long> {
            val items = mutableListOf<Long>()
            eat('(')
            while (!eat(')')) {
                space()
                val start = pos
                while (pos < text.length && text[pos] in '0'..'9') pos++
                items.add(text.substring(start, pos).toLongOrNull() ?: fail())
                if (!eat(',')) {
                    if (!eat(')')) fail()
                    break
                }
            }
            return items
        }
    }
}
