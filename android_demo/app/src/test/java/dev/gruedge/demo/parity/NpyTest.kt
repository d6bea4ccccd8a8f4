package dev.gruedge.demo.parity

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

class NpyTest {
    @Test
    fun readsFloat32InCOrder() {
        val t = Npy.read(TestNpy.bytes(intArrayOf(2, 3), floatArrayOf(1f, 2f, 3f, 4f, 5f, 6f)))
        assertArrayEquals(intArrayOf(2, 3), t.shape)
        assertArrayEquals(floatArrayOf(4f, 5f, 6f), t.row(1), 0f)
    }

    @Test
    fun readsOneDimensionalShape() {
        assertArrayEquals(intArrayOf(4), Npy.read(TestNpy.bytes(intArrayOf(4), FloatArray(4))).shape)
    }

    @Test
    fun refusesOtherDtypesNamingThem() {
        val e = assertThrows(NpyException::class.java) {
            Npy.read(TestNpy.bytes(intArrayOf(2), FloatArray(4), descr = "<f8"), "x.npy")
        }
        assertTrue(e.message!!, e.message!!.contains("dtype <f8"))
    }

    @Test
    fun refusesFortranOrder() {
        val e = assertThrows(NpyException::class.java) {
            Npy.read(TestNpy.bytes(intArrayOf(2, 2), FloatArray(4), fortran = true))
        }
        assertTrue(e.message!!.contains("Fortran order"))
    }

    @Test
    fun refusesTruncatedData() {
        val full = TestNpy.bytes(intArrayOf(3, 2), FloatArray(6))
        val e = assertThrows(NpyException::class.java) { Npy.read(full.copyOf(full.size - 3), "cut.npy") }
        assertEquals("cut.npy is truncated or padded: shape [3, 2] needs 24 bytes of data, the file has 21", e.message)
        val padded = full + ByteArray(4)
        assertThrows(NpyException::class.java) { Npy.read(padded, "padded.npy") }
    }

    @Test
    fun refusesOtherFormatVersions() {
        val e = assertThrows(NpyException::class.java) {
            Npy.read(TestNpy.bytes(intArrayOf(1), FloatArray(1), version = 2))
        }
        assertTrue(e.message!!.contains("only format 1.0"))
    }

    @Test
    fun aHugeDeclaredShapeIsRefusedBeforeAllocating() {
        val e = assertThrows(NpyException::class.java) {
            Npy.read(TestNpy.bytes(intArrayOf(1_000_000, 1_000_000), FloatArray(1)), "huge.npy")
        }
        assertTrue(e.message!!, e.message!!.contains("needs 4000000000000 bytes"))
    }

    @Test
    fun refusesNonNpyBytes() {
        assertThrows(NpyException::class.java) { Npy.read("hello world".toByteArray()) }
    }
}
