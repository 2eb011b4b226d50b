/**
 * Adversarial inputs for property tests: strings and JSON an attacker (or a broken client) would send, and
 * bodies made from a valid value with one field replaced by such junk. Shared by the decoder, HTTP-body and
 * handshake-socket tests.
 */
import * as Arbitrary from "effect/Arbitrary"
import * as FastCheck from "effect/FastCheck"
import * as Schema from "effect/Schema"

const fc = FastCheck

/** Strings that have broken parsers before: prototype keys, SQL, control and bidi characters, lone surrogates. */
const nasty = fc.constantFrom(
  "",
  " ",
  "\u0000",
  "\u0000\u0001\u001f\u007f",
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "'; DROP TABLE neurons; --",
  "\" OR 1=1 --",
  "${process.exit(1)}",
  "{{7*7}}",
  "%00%0d%0a",
  "\r\nX-Injected: 1",
  "\ud800",
  "\udfff\ud800",
  "\u202e\u2066",
  "\ufeff",
  "𝕳𝖊𝖑𝖑𝖔",
  "null",
  "NaN",
  "-0",
  "1e309",
  "9007199254740993",
  "=",
  "==",
  "+/+/",
  "A".repeat(10_000),
  "https://user:pw@x.org",
  "javascript:alert(1)",
  "file:///etc/passwd",
  "http://[::1]:99999",
  "1234567898",
  "0000000000",
  "12345678930"
)

/** Any string: ASCII, full Unicode with lone surrogates, or one of the known-nasty ones. */
export const hostileString: FastCheck.Arbitrary<string> = fc.oneof(
  nasty,
  fc.string(),
  fc.string({ unit: "binary", maxLength: 200 }),
  fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: 9, maxLength: 11 }),
  fc.string({ unit: fc.constantFrom(..."ABCabc019-_+/= \u0000"), maxLength: 100 })
)

/** Any JSON value, including odd numbers and prototype keys. */
export const hostileJson: FastCheck.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.constantFrom(null, true, 0, -0, 1.5, -1, 2 ** 53 + 1, 1e308, [], {}, [[[[[]]]]]),
  hostileString,
  fc.dictionary(fc.oneof(nasty, fc.string({ maxLength: 10 })), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 })
)

/** Text that is not valid JSON, or JSON that nests deeper than any parser should be asked to go. */
export const hostileText: FastCheck.Arbitrary<string> = fc.oneof(
  hostileString,
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v).slice(0, -1)),
  fc.integer({ min: 1, max: 50_000 }).map((n) => "[".repeat(n) + "]".repeat(n)),
  fc.integer({ min: 1, max: 50_000 }).map((n) => "{\"a\":".repeat(n) + "1" + "}".repeat(n)),
  // Deep nesting inside a field of an otherwise plausible message: the parser copes, the error formatter must too.
  fc.tuple(
    fc.constantFrom("type", "consent_token_payload", "provider_npi", "neuron_endpoint_url", "organization_npi"),
    fc.integer({ min: 60, max: 20_000 })
  ).map(([key, n]) =>
    `{"type":"handshake.auth","organization_npi":"1234567893",${JSON.stringify(key)}:${"[".repeat(n)}${"]".repeat(n)}}`
  ),
  fc.constantFrom("{", "}", "{\"a\":1,}", "{'a':1}", "{\"a\":1}{\"b\":2}", "\"\\ud800\"", "[1,2", "\u0000{}")
)

/**
 * What a decoder of `schema` may be fed: a valid value encoded (sometimes), the valid value with one field
 * replaced by junk or removed, an extra field, or junk altogether.
 */
export const bodyOf = <A, I>(schema: Schema.Schema<A, I>): FastCheck.Arbitrary<unknown> => {
  const encode = Schema.encodeSync(schema)
  const valid = Arbitrary.make(schema).map((a) => encode(a) as Record<string, unknown>)
  const mutated = fc.tuple(valid, fc.nat(), hostileJson, fc.boolean()).map(([body, n, junk, remove]) => {
    const keys = Object.keys(body)
    if (keys.length === 0) return { junk }
    const key = keys[n % keys.length]!
    const copy: Record<string, unknown> = { ...body }
    if (remove) delete copy[key]
    else copy[key] = junk
    return copy
  })
  const extra = fc.tuple(valid, fc.string({ maxLength: 20 }), hostileJson).map(([body, key, junk]) => ({
    ...body,
    [key]: junk
  }))
  return fc.oneof(valid, mutated, mutated, extra, hostileJson)
}
