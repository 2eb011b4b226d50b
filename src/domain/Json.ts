/**
 * Untrusted JSON text, parsed with a bound on its nesting. `JSON.parse` itself copes with deep nesting, but
 * everything after it recurses: `JSON.stringify`, and Schema's error formatter, which quotes the value it got.
 * A 5 000-level `[[[...]]]` (10 KB) made them throw `RangeError: Maximum call stack size exceeded`, a 500 at the
 * registry. So the depth is checked on the text, before anything is parsed.
 */
import * as Either from "effect/Either"

/** The deepest nesting accepted: far beyond any message of the protocol (3 levels), far below the stack's limit. */
export const MAX_JSON_DEPTH = 64

/** Why JSON text was refused. */
export type JsonRefusal = "invalid" | "too_deep"

/** True when `text` opens more than `max` arrays or objects inside one another (brackets in strings ignored). */
export const nestsDeeperThan = (text: string, max: number = MAX_JSON_DEPTH): boolean => {
  // Most texts have fewer brackets than the bound: nothing to scan.
  let brackets = 0
  for (let i = text.indexOf("["); i !== -1 && brackets <= max; i = text.indexOf("[", i + 1)) brackets++
  for (let i = text.indexOf("{"); i !== -1 && brackets <= max; i = text.indexOf("{", i + 1)) brackets++
  if (brackets <= max) return false
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // a backslash escapes the next character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true
    } else if (c === 0x5d || c === 0x7d) {
      depth--
    }
  }
  return false
}

/** Parses untrusted JSON text: the value, or why it was refused. Never throws. */
export const parseUntrusted = (text: string): Either.Either<unknown, JsonRefusal> => {
  if (nestsDeeperThan(text)) return Either.left("too_deep")
  try {
    return Either.right(JSON.parse(text) as unknown)
  } catch {
    return Either.left("invalid")
  }
}

/** The words for a refusal, after the field name (`body: ...`). */
export const describeRefusal = (refusal: JsonRefusal): string =>
  refusal === "too_deep" ? `must be JSON nested at most ${MAX_JSON_DEPTH} levels deep` : "must be valid JSON"
