package dev.gruedge.demo.parity

import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Test

class JsonTest {
    @Test
    fun parsesNestedValues() {
        val v = Json.parse("""{"a": [1, 2.5e-3, -4], "b": {"c": "x\"y\u00e9"}, "d": null, "e": true}""") as Map<*, *>
        assertEquals(listOf(1L, 2.5e-3, -4L), v["a"])
        assertEquals("x\"yé", (v["b"] as Map<*, *>)["c"])
        assertEquals(null, v["d"])
        assertEquals(true, v["e"])
    }

    @Test
    fun refusesBrokenJson() {
        assertThrows(JsonException::class.java) { Json.parse("{\"a\": 1,") }
        assertThrows(JsonException::class.java) { Json.parse("{\"a\": 1} x") }
    }

    @Test
    fun refusesWhatPythonsJsonRefuses() {
        for (bad in listOf("NaN", "[Infinity]", "01", "[1.]", "\"a\\qb\"", "\"tab\there\"", "\u00a0[]", "[1,]")) {
            assertThrows(bad, JsonException::class.java) { Json.parse(bad) }
        }
        assertThrows(JsonException::class.java) { Json.parse(byteArrayOf(0x22, 0xff.toByte(), 0x22)) }
    }
}
