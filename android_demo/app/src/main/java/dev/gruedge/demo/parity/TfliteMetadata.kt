package dev.gruedge.demo.parity

import java.nio.ByteBuffer
import java.nio.ByteOrder

class TfliteFormatException(message: String) : Exception(message)

/**
 * Reads the `metadata` list of a `.tflite` flatbuffer (TFLite's schema.fbs: Model.buffers is field 4, Model.metadata
 * field 6; Metadata = {name: string, buffer: uint}; Buffer = {data: [ubyte], offset: ulong, size: ulong}) without
 * the flatbuffers library: entry name -> bytes. gru-edge keeps the model's description in the entry "gru_edge".
 */
object TfliteMetadata {
    private const val MODEL_BUFFERS = 4
    private const val MODEL_METADATA = 6

    fun read(model: ByteArray): Map<String, ByteArray> {
        if (model.size < 8 || String(model, 4, 4, Charsets.US_ASCII) != "TFL3") {
            throw TfliteFormatException("not a TFLite model (no 'TFL3' identifier)")
        }
        val buf = ByteBuffer.wrap(model).order(ByteOrder.LITTLE_ENDIAN)
        return try {
            val root = Table(buf, buf.getInt(0))
            val buffers = root.vector(MODEL_BUFFERS)
            root.vector(MODEL_METADATA).associate { entry ->
                val name = entry.string(0) ?: ""
                val index = entry.uint(1)
                if (index < 0 || index >= buffers.size) throw TfliteFormatException("metadata '$name' names buffer $index")
                name to buffers[index.toInt()].bytes(model)
            }
        } catch (e: IndexOutOfBoundsException) {
            throw TfliteFormatException("a damaged TFLite model (an offset points outside the file)")
        } catch (e: IllegalArgumentException) {
            throw TfliteFormatException("a damaged TFLite model (an offset points outside the file)")
        }
    }

    /** One flatbuffer table at [pos]: fields are found through its vtable. */
    private class Table(val buf: ByteBuffer, val pos: Int) {
        private val vtable = pos - buf.getInt(pos)
        private val vtableSize = buf.getShort(vtable).toInt() and 0xFFFF

        private fun field(slot: Int): Int {
            val at = 4 + 2 * slot
            if (at >= vtableSize) return 0
            val offset = buf.getShort(vtable + at).toInt() and 0xFFFF
            return if (offset == 0) 0 else pos + offset
        }

        private fun target(slot: Int): Int {
            val f = field(slot)
            return if (f == 0) 0 else f + buf.getInt(f)
        }

        fun uint(slot: Int): Long = field(slot).let { if (it == 0) 0L else buf.getInt(it).toLong() and 0xFFFFFFFFL }

        fun ulong(slot: Int): Long = field(slot).let { if (it == 0) 0L else buf.getLong(it) }

        fun string(slot: Int): String? {
            val s = target(slot)
            if (s == 0) return null
            return String(copy(s), Charsets.UTF_8)
        }

        /** The bytes of the string or [ubyte] vector at [at] (length, then the bytes). Android before API 35 has no
         *  absolute bulk get: copy through a duplicate. */
        private fun copy(at: Int): ByteArray {
            val length = buf.getInt(at)
            if (length < 0 || length > buf.limit() - at - 4) throw IndexOutOfBoundsException("length $length at $at")
            val out = ByteArray(length)
            (buf.duplicate().position(at + 4) as ByteBuffer).get(out)
            return out
        }

        fun vector(slot: Int): List<Table> {
            val v = target(slot)
            if (v == 0) return emptyList()
            val count = buf.getInt(v)
            if (count < 0 || count > (buf.limit() - v - 4) / 4) throw IndexOutOfBoundsException("count $count at $v")
            return (0 until count).map { i ->
                val element = v + 4 + 4 * i
                Table(buf, element + buf.getInt(element))
            }
        }

        /** A Buffer table's bytes: inline `data`, or (models past 2 GiB) `size` bytes at file `offset`. */
        fun bytes(model: ByteArray): ByteArray {
            val data = target(0)
            if (data != 0) return copy(data)
            val offset = ulong(1)
            val size = ulong(2)
            if (offset <= 1) return ByteArray(0)
            if (offset < 0 || size < 0 || offset + size > model.size) {
                throw TfliteFormatException("a buffer lies outside the file")
            }
            return model.copyOfRange(offset.toInt(), (offset + size).toInt())
        }
    }
}
