package dev.gruedge.demo.parity

import java.nio.ByteBuffer
import java.nio.ByteOrder

/** Writes `.npy` bytes the way NumPy does (format 1.0, header padded to 64 bytes), for tests. */
object TestNpy {
    fun bytes(shape: IntArray, data: FloatArray, descr: String = "<f4", fortran: Boolean = false,
        version: Int = 1): ByteArray {
        val shapeText = when (shape.size) {
            1 -> "(${shape[0]},)"
            else -> shape.joinToString(", ", "(", ")")
        }
        var header = "{'descr': '$descr', 'fortran_order': ${if (fortran) "True" else "False"}, " +
            "'shape': $shapeText, }"
        val total = 10 + header.length + 1
        header += " ".repeat((64 - total % 64) % 64) + "\n"
        val buf = ByteBuffer.allocate(10 + header.length + data.size * 4).order(ByteOrder.LITTLE_ENDIAN)
        buf.put(byteArrayOf(0x93.toByte(), 'N'.code.toByte(), 'U'.code.toByte(), 'M'.code.toByte(),
            'P'.code.toByte(), 'Y'.code.toByte(), version.toByte(), 0))
        buf.putShort(header.length.toShort())
        buf.put(header.toByteArray(Charsets.ISO_8859_1))
        data.forEach { buf.putFloat(it) }
        return buf.array()
    }

    fun tensor(rows: Int, cols: Int, f: (Int, Int) -> Float) =
        FloatTensor(intArrayOf(rows, cols), FloatArray(rows * cols) { f(it / cols, it % cols) })
}
