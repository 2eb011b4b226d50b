/**
 * Hostile input, decoder by decoder (issue 10): every decoder at the edge, fed values generated from its Schema and
 * adversarial strings and JSON, answers a typed error or a valid value — never a throw, never a defect — and every
 * valid value generated from a Schema round-trips.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Arbitrary from "effect/Arbitrary"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { RelationshipParams } from "../../src/api/NeuronApi.js"
import { patientKeyFromSeed, signPayload } from "../../src/careagent/CareAgentKeys.js"
import { ConsentError } from "../../src/consent/ConsentError.js"
import { ConsentClaims, decodeClaims, encodePayload } from "../../src/consent/ConsentToken.js"
import * as ConsentVerifier from "../../src/consent/ConsentVerifier.js"
import {
  Base64UrlBytes,
  Ed25519PublicKey,
  Ed25519Signature,
  encode,
  isCanonicalBase64Url
} from "../../src/domain/Base64Url.js"
import { MAX_JSON_DEPTH, nestsDeeperThan, parseUntrusted } from "../../src/domain/Json.js"
import { Npi } from "../../src/domain/Npi.js"
import * as AxonApi from "../../src/protocol/AxonApi.js"
import { ConsentRevokeMessage } from "../../src/protocol/ConsentRevocation.js"
import {
  decodeFirstMessage,
  decodeFrame,
  HandshakeAuth,
  HandshakeChallengeResponse,
  HandshakeFailure,
  MessageType,
  ServerMessage
} from "../../src/protocol/HandshakeMessages.js"
import { bodyOf, hostileJson, hostileString, hostileText } from "../support/hostile.js"

const fc = FastCheck
const ORG = Npi.make("1234567893")

/** Runs a synchronous decoder; a throw fails the property with the input that caused it. */
const total = <A>(label: string, f: () => A): A => {
  try {
    return f()
  } catch (error) {
    throw new Error(`${label} threw instead of answering a typed error: ${String(error)}`)
  }
}

/** Decodes `input` with `schema`: a Right, or a Left holding a ParseError; never a throw. */
const decodeTotal = <A, I>(schema: Schema.Schema<A, I>, input: unknown) => {
  const result = total("Schema.decodeUnknownEither", () => Schema.decodeUnknownEither(schema)(input))
  if (Either.isLeft(result)) assert.isTrue(ParseResult.isParseError(result.left))
  return result
}

/**
 * A valid value encodes, survives JSON, decodes, and encodes to the same wire form (an optional field given as
 * `undefined` and one left out are the same on the wire).
 */
const roundTrips = <A, I>(schema: Schema.Schema<A, I>, value: A) => {
  const wire = JSON.stringify(Schema.encodeSync(schema)(value))
  const decoded = Schema.decodeUnknownSync(schema)(JSON.parse(wire))
  assert.strictEqual(JSON.stringify(Schema.encodeSync(schema)(decoded)), wire)
}

/** The CMS rule written independently of src/domain/Npi.ts: plain Luhn over `80840` + all ten digits. */
const luhnNpi = (s: string): boolean => {
  if (!/^[12][0-9]{9}$/.test(s)) return false
  const digits = ("80840" + s).split("").map(Number).reverse()
  const sum = digits.reduce((acc, d, i) => acc + (i % 2 === 1 ? (d * 2 > 9 ? d * 2 - 9 : d * 2) : d), 0)
  return sum % 10 === 0
}

describe("hostile input: JSON nesting", () => {
  it.prop("JSON nesting: text is refused as too deep exactly past 64 levels; brackets inside strings do not count", [
    fc.integer({ min: 0, max: 300 }),
    fc.constantFrom("[", "{\"a\":"),
    fc.string({ unit: fc.constantFrom("[", "{", "\\", "\"", "a"), maxLength: 200 })
  ], ([n, open, inString]) => {
    const close = open === "[" ? "]" : "}"
    const text = open.repeat(n) + (open === "[" ? "" : "1") + close.repeat(n)
    assert.strictEqual(nestsDeeperThan(text), n > MAX_JSON_DEPTH)
    const parsed = parseUntrusted(text)
    assert.strictEqual(Either.isLeft(parsed) && parsed.left === "too_deep", n > MAX_JSON_DEPTH)
    // The same brackets inside a JSON string are text, not nesting.
    assert.isFalse(nestsDeeperThan(JSON.stringify([inString.repeat(3)])))
  })
})

describe("hostile input: base64url", () => {
  it.prop("base64url: any bytes round-trip through the strict decoder", [fc.uint8Array({ maxLength: 300 })], ([b]) => {
    const decoded = decodeTotal(Base64UrlBytes, encode(b))
    assert.deepStrictEqual(Either.getOrThrow(decoded), new Uint8Array(b))
  })

  it.prop("base64url: Schema-generated values round-trip (bytes, keys, signatures)", [
    Base64UrlBytes,
    Ed25519PublicKey,
    Ed25519Signature
  ], ([bytes, key, signature]) => {
    roundTrips(Base64UrlBytes, bytes)
    roundTrips(Ed25519PublicKey, key)
    roundTrips(Ed25519Signature, signature)
  })

  it.prop("base64url: any string is a typed error or canonical text (padding, + / and stray characters refused)", [
    hostileString
  ], ([s]) => {
    const decoded = decodeTotal(Base64UrlBytes, s)
    if (Either.isRight(decoded)) {
      assert.isTrue(/^[A-Za-z0-9_-]*$/.test(s), `accepted characters outside the alphabet: ${JSON.stringify(s)}`)
      assert.strictEqual(encode(decoded.right), s)
    }
    assert.strictEqual(Either.isRight(decoded), isCanonicalBase64Url(s))
    const key = decodeTotal(Ed25519PublicKey, s)
    if (Either.isRight(key)) assert.strictEqual(key.right.length, 32)
    const signature = decodeTotal(Ed25519Signature, s)
    if (Either.isRight(signature)) assert.strictEqual(signature.right.length, 64)
  })

  it.prop("base64url: a valid encoding with padding or one character changed outside the alphabet is refused", [
    fc.uint8Array({ minLength: 1, maxLength: 64 }),
    fc.nat(),
    fc.constantFrom("=", "+", "/", " ", ".", "\u0000", "é")
  ], ([bytes, at, bad]) => {
    const text = encode(bytes)
    const i = at % text.length
    assert.isTrue(Either.isLeft(decodeTotal(Base64UrlBytes, text.slice(0, i) + bad + text.slice(i + 1))))
    assert.isTrue(Either.isLeft(decodeTotal(Base64UrlBytes, text + "=")))
  })

  it.prop("base64url: non-strings are refused", [hostileJson], ([value]) => {
    if (typeof value !== "string") assert.isTrue(Either.isLeft(decodeTotal(Base64UrlBytes, value)))
  })
})

describe("hostile input: NPI", () => {
  it.prop("NPI: Schema-generated NPIs are valid and round-trip", [Npi], ([npi]) => {
    assert.isTrue(luhnNpi(npi), npi)
    roundTrips(Npi, npi)
  })

  it.prop("NPI: ten digits decode exactly when the CMS Luhn rule (checked independently) holds", [
    fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: 10, maxLength: 10 })
  ], ([s]) => {
    assert.strictEqual(Either.isRight(decodeTotal(Npi, s)), luhnNpi(s), s)
  })

  it.prop(
    "NPI: changing any one digit of a valid NPI makes it invalid",
    [Npi, fc.nat(9), fc.nat(9)],
    ([npi, at, d]) => {
      const changed = npi.slice(0, at) + String(d) + npi.slice(at + 1)
      FastCheck.pre(changed !== npi)
      assert.isTrue(Either.isLeft(decodeTotal(Npi, changed)), changed)
    }
  )

  it.prop("NPI: any string or JSON value is a typed error or a valid NPI", [fc.oneof(hostileString, hostileJson)], ([
    value
  ]) => {
    const decoded = decodeTotal(Npi, value)
    if (Either.isRight(decoded)) assert.isTrue(luhnNpi(decoded.right))
  })
})

/** A decodeFrame answer: the message, or an INVALID_MESSAGE refusal that closes with 4002. */
const assertFrameAnswer = (result: Either.Either<unknown, HandshakeFailure>) => {
  if (Either.isLeft(result)) {
    assert.instanceOf(result.left, HandshakeFailure)
    assert.strictEqual(result.left.code, "INVALID_MESSAGE")
    assert.strictEqual(result.left.closeCode, 4002)
    assert.isTrue(result.left.message.length > 0 && result.left.message.length < 2000)
  }
}

const decodeAuth = decodeFrame(HandshakeAuth, MessageType.auth)
const decodeResponse = decodeFrame(HandshakeChallengeResponse, MessageType.challengeResponse)

describe("hostile input: handshake messages", () => {
  it.prop("handshake messages: Schema-generated auth and challenge_response frames decode to themselves", [
    HandshakeAuth,
    HandshakeChallengeResponse
  ], ([auth, response]) => {
    assert.deepStrictEqual(Either.getOrThrow(decodeAuth(JSON.stringify(auth))), auth)
    assert.deepStrictEqual(Either.getOrThrow(decodeResponse(JSON.stringify(response))), response)
    // Each message is refused where the other is expected (a message out of order).
    assertFrameAnswer(decodeAuth(JSON.stringify(response)))
    assert.isTrue(Either.isLeft(decodeAuth(JSON.stringify(response))))
    assert.isTrue(Either.isLeft(decodeResponse(JSON.stringify(auth))))
  })

  it.prop("handshake messages: any text frame is the message or INVALID_MESSAGE (4002), never a throw", [
    hostileText
  ], ([text]) => {
    assertFrameAnswer(total("decodeFrame(auth)", () => decodeAuth(text)))
    assertFrameAnswer(total("decodeFrame(challenge_response)", () => decodeResponse(text)))
  })

  it("handshake messages: a refusal never echoes a hostile value or key at length (fast-check's counterexample, seed 469321677)", () => {
    const huge = "A".repeat(5_000)
    const frame = JSON.stringify({
      type: "handshake.auth",
      consent_token_payload: { [huge]: huge },
      consent_token_signature: huge,
      patient_agent_id: "p",
      patient_public_key: huge,
      patient_endpoint: huge
    })
    const result = decodeAuth(frame)
    assertFrameAnswer(result)
    assert.isTrue(Either.isLeft(result))
  })

  it.prop("handshake messages: an auth with one field replaced by junk, removed or added is decoded or refused", [
    bodyOf(HandshakeAuth)
  ], ([body]) => {
    const result = total("decodeFrame(auth)", () => decodeAuth(JSON.stringify(body) ?? "undefined"))
    assertFrameAnswer(result)
    // Accepted exactly when the Schema accepts the object (and names its type).
    assert.strictEqual(Either.isRight(result), Either.isRight(Schema.decodeUnknownEither(HandshakeAuth)(body)))
  })

  it.prop(
    "handshake messages: the first message decoder takes Schema-generated handshake.auth and consent.revoke frames as themselves, and any text frame is one of them or INVALID_MESSAGE (4002)",
    [
      HandshakeAuth,
      ConsentRevokeMessage,
      hostileText,
      bodyOf(ConsentRevokeMessage)
    ],
    ([auth, revoke, text, mutated]) => {
      assert.deepStrictEqual(Either.getOrThrow(decodeFirstMessage(JSON.stringify(auth))), auth)
      assert.deepStrictEqual(Either.getOrThrow(decodeFirstMessage(JSON.stringify(revoke))), revoke)
      assertFrameAnswer(total("decodeFirstMessage", () => decodeFirstMessage(text)))
      const result = total("decodeFirstMessage", () => decodeFirstMessage(JSON.stringify(mutated) ?? "undefined"))
      assertFrameAnswer(result)
      // Accepted exactly when the Schema accepts the object.
      assert.strictEqual(
        Either.isRight(result),
        Either.isRight(Schema.decodeUnknownEither(ConsentRevokeMessage)(mutated))
      )
      // A consent.revoke is out of order anywhere but first.
      assert.isTrue(Either.isLeft(decodeResponse(JSON.stringify(revoke))))
    }
  )

  it.prop("handshake messages: binary frames are refused with INVALID_MESSAGE", [fc.uint8Array({ maxLength: 200 })], ([
    bytes
  ]) => {
    const result = decodeAuth(bytes)
    assertFrameAnswer(result)
    assert.isTrue(Either.isLeft(result))
  })

  it.prop("handshake messages: a CareAgent decoding server messages gets a value or a ParseError", [
    fc.oneof(hostileJson, Arbitrary.make(ServerMessage).map(Schema.encodeSync(ServerMessage)))
  ], ([value]) => {
    decodeTotal(ServerMessage, value)
  })
})

const keyA = patientKeyFromSeed(new Uint8Array(32).fill(7))
const keyB = patientKeyFromSeed(new Uint8Array(32).fill(9))

/** Runs `verifyToken` and checks the outcome: a value or a ConsentError failure, never a defect. */
const verifyTotal = (input: ConsentVerifier.ConsentTokenInput) =>
  Effect.gen(function*() {
    const verifier = yield* ConsentVerifier.make({ organizationNpi: ORG })
    const exit = yield* Effect.exit(verifier.verifyToken(input))
    if (Exit.isFailure(exit)) {
      assert.isFalse(Cause.isDie(exit.cause), `a defect: ${Cause.pretty(exit.cause)}`)
      const failure = Cause.failureOption(exit.cause)
      assert.isTrue(failure._tag === "Some" && failure.value instanceof ConsentError, Cause.pretty(exit.cause))
    }
    return exit
  })

describe("hostile input: consent tokens", () => {
  it.prop("consent tokens: Schema-generated claims round-trip through the payload encoding", [ConsentClaims], ([
    claims
  ]) => {
    const payload = new Uint8Array(Buffer.from(encodePayload(claims), "base64url"))
    const decoded = Schema.decodeUnknownSync(ConsentClaims)(Either.getOrThrow(decodeClaims(payload)))
    const wire = Schema.encodeSync(ConsentClaims)
    assert.strictEqual(JSON.stringify(wire(decoded)), JSON.stringify(wire(claims)))
  })

  it.prop("consent tokens: any payload bytes are claims or a malformed ConsentError", [fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    hostileJson.map((v) => new Uint8Array(Buffer.from(JSON.stringify(v) ?? "", "utf8"))),
    hostileText.map((t) => new Uint8Array(Buffer.from(t, "utf8")))
  )], ([bytes]) => {
    const decoded = total("decodeClaims", () => decodeClaims(bytes))
    if (Either.isLeft(decoded)) {
      assert.instanceOf(decoded.left, ConsentError)
      assert.strictEqual(decoded.left.reason, "malformed")
      assert.match(decoded.left.message, /^consent_token_payload: /)
    }
  })

  it.effect.prop("ConsentVerifier on garbage: random token fields are a ConsentError, never a defect", [
    hostileString,
    hostileString,
    hostileString,
    hostileString
  ], ([payload, signature, patient, key]) =>
    Effect.gen(function*() {
      const exit = yield* verifyTotal({
        consent_token_payload: payload,
        consent_token_signature: signature,
        patient_agent_id: patient,
        patient_public_key: key
      })
      assert.isTrue(Exit.isFailure(exit))
    }))

  it.effect.prop("ConsentVerifier on garbage: junk signed by the patient's own key is parsed only to be refused", [
    fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 300 }), hostileText.filter((t) => t.length > 0)),
    hostileString
  ], ([payload, patient]) =>
    Effect.gen(function*() {
      const exit = yield* verifyTotal({
        ...signPayload(keyA, payload),
        patient_agent_id: patient,
        patient_public_key: keyA.publicKeyB64u
      })
      assert.isTrue(Exit.isFailure(exit))
    }))

  it.effect.prop("ConsentVerifier on garbage: Schema-generated claims, signed, verify or fail by a rule", [
    ConsentClaims,
    fc.boolean()
  ], ([claims, otherKey]) =>
    Effect.gen(function*() {
      const signed = signPayload(keyA, Buffer.from(encodePayload(claims), "base64url"))
      const exit = yield* verifyTotal({
        ...signed,
        patient_agent_id: claims.patient_agent_id,
        patient_public_key: (otherKey ? keyB : keyA).publicKeyB64u
      })
      if (otherKey) assert.isTrue(Exit.isFailure(exit))
      if (Exit.isSuccess(exit)) assert.deepStrictEqual(exit.value.claims.provider_npi, claims.provider_npi)
    }))

  it.effect.prop("ConsentVerifier on garbage: random challenge answers are a ConsentError", [
    hostileString,
    hostileString,
    hostileString
  ], ([connection, nonce, signed]) =>
    Effect.gen(function*() {
      const verifier = yield* ConsentVerifier.make({ organizationNpi: ORG })
      const exit = yield* Effect.exit(verifier.answerChallenge(connection, nonce, signed))
      assert.isTrue(Exit.isFailure(exit) && !Cause.isDie(exit.cause))
    }))
})

/** Request bodies the registry and the Neuron's admin API decode, and answers the Neuron decodes from registries. */
const requestBodies = [
  ["registry: POST /v1/neurons", AxonApi.RegisterNeuronRequest],
  ["registry: PUT /v1/neurons/{id}/endpoint", AxonApi.HeartbeatRequest],
  ["registry and admin API: POST providers", AxonApi.RegisterProviderRequest]
] as const

const answers = [
  AxonApi.NeuronRegistered,
  AxonApi.NeuronReregistered,
  AxonApi.HeartbeatAccepted,
  AxonApi.ProviderRegistered,
  AxonApi.ProviderList,
  AxonApi.NeuronView,
  AxonApi.RegistryEntry
] as const

describe("hostile input: registry and admin API bodies", () => {
  for (const [route, schema] of requestBodies) {
    it.prop(`${route}: Schema-generated bodies round-trip`, [schema], ([value]) => {
      roundTrips(schema as Schema.Schema<any, any>, value)
    })

    it.prop(`${route}: mutated bodies and junk are a value or a ParseError naming a field`, [
      bodyOf(schema as Schema.Schema<any, any>)
    ], ([body]) => {
      const decoded = decodeTotal(schema as Schema.Schema<any, any>, body)
      if (Either.isLeft(decoded)) {
        const issues = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
        assert.isTrue(issues.length > 0)
      }
    })
  }

  it.prop("admin API: GET /v1/relationships query parameters are a value or a ParseError", [
    fc.record({ patient_agent_id: hostileString, provider_npi: fc.oneof(hostileString, Arbitrary.make(Npi)) }, {
      requiredKeys: []
    })
  ], ([params]) => {
    decodeTotal(RelationshipParams, params)
  })

  it.prop("registry answers the Neuron decodes: Schema-generated ones round-trip, junk is a ParseError", [
    fc.constantFrom(...answers),
    hostileJson
  ], ([schema, junk]) => {
    const sample = FastCheck.sample(Arbitrary.make(schema as Schema.Schema<any, any>), 1)[0]
    roundTrips(schema as Schema.Schema<any, any>, sample)
    decodeTotal(schema as Schema.Schema<any, any>, junk)
  })
})
