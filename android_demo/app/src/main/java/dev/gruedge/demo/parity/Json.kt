package dev.gruedge.demo.parity

class JsonException(message: String) : Exception(message)

/**
 * A small JSON reader (objects, arrays, strings, numbers, true/false/null) so the parity core needs no library:
 * `org.json` is part of Android, not of the JVM where CI tests this package.
 */
class Json private constructor(private val text: String) {
    private var pos = 0

    companion object {
        fun parse(text: String): Any? {
            val parser = Json(text)
            val value = parser.value()
            parser.skipSpace()
            if (parser.pos != text.length) parser.fail("trailing characters")
            return value
        }
    }

    private fun fail(what: String): Nothing = throw JsonException("invalid JSON at offset $pos: $what")

    private fun skipSpace() {
        while (pos < text.length && text[pos].isWhitespace()) pos++
    }

    private fun value(): Any? {
        skipSpace()
        if (pos >= text.length) fail("unexpected end")
        return when (val c = text[pos]) {
            '{' -> obj()
            '[' -> array()
            '"' -> string()
            't' -> literal("true", true)
            'f' -> literal("false", false)
            'n' -> literal("null", null)
            else -> if (c == '-' || c.isDigit()) number() else fail("unexpected '$c'")
        }
    }

    private fun literal(word: String, result: Any?): Any? {
        if (!text.startsWith(word, pos)) fail("expected $word")
        pos += word.length
        return result
    }

    private fun number(): Double {
        val start = pos
        while (pos < text.length && (text[pos].isDigit() || text[pos] in "+-.eE")) pos++
        return text.substring(start, pos).toDoubleOrNull() ?: fail("bad number")
    }

    private fun string(): String {
        val out = StringBuilder()
        pos++ // opening quote
        while (true) {
            if (pos >= text.length) fail("unterminated string")
            val c = text[pos++]
            when (c) {
                '"' -> return out.toString()
                '\\' -> {
                    val e = text[pos++]
                    when (e) {
                        'n' -> out.append('\n')
                        't' -> out.append('\t')
                        'r' -> out.append('\r')
                        'b' -> out.append('\b')
                        'f' -> out.append('\u000c')
                        'u' -> {
                            out.append(text.substring(pos, pos + 4).toInt(16).toChar())
                            pos += 4
                        }
                        else -> out.append(e)
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
        if (text[pos] == ']') {
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
        if (text[pos] == '}') {
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
