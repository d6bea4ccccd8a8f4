package dev.gruedge.demo.parity

import java.nio.ByteBuffer
import java.nio.charset.CharacterCodingException
import java.nio.charset.CodingErrorAction

class JsonException(message: String) : Exception(message)

/**
 * A small, strict JSON reader (RFC 8259: objects, arrays, strings, numbers, true/false/null) so the parity core needs
 * no library: `org.json` is part of Android, not of the JVM where CI tests this package. It accepts and refuses what
 * Python's `json` module (with NaN/Infinity refused) does: integer literals become [Long], other numbers [Double];
 * nesting deeper than [maxDepth] is refused instead of exhausting the stack.
 */
class Json private constructor(private val text: String, private val maxDepth: Int) {
    private var pos = 0
    private var depth = 0

    companion object {
        fun parse(text: String, maxDepth: Int = 512): Any? {
            val parser = Json(text, maxDepth)
            val value = parser.value()
            parser.skipSpace()
            if (parser.pos != text.length) parser.fail("trailing characters")
            return value
        }

        /** Decodes UTF-8 strictly (malformed bytes are an error, as in Python), then parses. */
        fun parse(bytes: ByteArray, maxDepth: Int = 512): Any? {
            val text = try {
                Charsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes)).toString()
            } catch (e: CharacterCodingException) {
                throw JsonException("not UTF-8 text")
            }
            return parse(text, maxDepth)
        }

        private val NUMBER = Regex("-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?")
        private const val MAX_INT_DIGITS = 4300
    }

    private fun fail(what: String): Nothing = throw JsonException("invalid JSON at offset $pos: $what")

    private fun skipSpace() {
        while (pos < text.length && text[pos] in " \t\n\r") pos++
    }

    private fun value(): Any? {
        skipSpace()
        if (pos >= text.length) fail("unexpected end")
        return when (val c = text[pos]) {
            '{' -> nested { obj() }
            '[' -> nested { array() }
            '"' -> string()
            't' -> literal("true", true)
            'f' -> literal("false", false)
            'n' -> literal("null", null)
            else -> if (c == '-' || c.isDigit()) number() else fail("unexpected '$c'")
        }
    }

    private fun <T> nested(read: () -> T): T {
        if (++depth > maxDepth) throw JsonException("nesting deeper than $maxDepth levels")
        return read().also { depth-- }
    }

    private fun literal(word: String, result: Any?): Any? {
        if (!text.startsWith(word, pos)) fail("expected $word")
        pos += word.length
        return result
    }

    private fun number(): Any {
        val match = NUMBER.matchAt(text, pos) ?: fail("bad number")
        pos += match.value.length
        val integral = match.groupValues[2].isEmpty() && match.groupValues[3].isEmpty()
        // Python refuses integer literals of more than 4300 digits (its int_max_str_digits): so does this reader.
        if (integral && match.groupValues[1].length > MAX_INT_DIGITS) fail("integer of more than $MAX_INT_DIGITS digits")
        return (if (integral) match.value.toLongOrNull() else null) ?: match.value.toDouble()
    }

    private fun string(): String {
        val out = StringBuilder()
        pos++ // opening quote
        while (true) {
            if (pos >= text.length) fail("unterminated string")
            val c = text[pos++]
            when {
                c == '"' -> return out.toString()
                c < ' ' -> fail("control character in a string")
                c == '\\' -> {
                    if (pos >= text.length) fail("unterminated string")
                    when (val e = text[pos++]) {
                        '"', '\\', '/' -> out.append(e)
                        'n' -> out.append('\n')
                        't' -> out.append('\t')
                        'r' -> out.append('\r')
                        'b' -> out.append('\b')
                        'f' -> out.append('\u000c')
                        'u' -> {
                            val hex = text.substring(pos, minOf(pos + 4, text.length))
                            if (hex.length != 4 || !hex.all { it in '0'..'9' || it in 'a'..'f' || it in 'A'..'F' }) {
                                fail("bad \\u escape")
                            }
                            out.append(hex.toInt(16).toChar())
                            pos += 4
                        }
                        else -> fail("bad escape \\$e")
                    }
                }
                else -> out.append(c)
            }
        }
    }

    private fun array(): List<Any?> {
        val items = mutableListOf<Any?>()
        pos++
        skipSpace()
        if (text.getOrNull(pos) == ']') {
            pos++
            return items
        }
        while (true) {
            items.add(value())
            skipSpace()
            when (text.getOrNull(pos++)) {
                ',' -> continue
                ']' -> return items
                else -> fail("expected , or ]")
            }
        }
    }

    private fun obj(): Map<String, Any?> {
        val map = LinkedHashMap<String, Any?>()
        pos++
        skipSpace()
        if (text.getOrNull(pos) == '}') {
            pos++
            return map
        }
        while (true) {
            skipSpace()
            if (text.getOrNull(pos) != '"') fail("expected a key")
            val key = string()
            skipSpace()
            if (text.getOrNull(pos++) != ':') fail("expected :")
            map[key] = value()
            skipSpace()
            when (text.getOrNull(pos++)) {
                ',' -> continue
                '}' -> return map
                else -> fail("expected , or }")
            }
        }
    }
}
