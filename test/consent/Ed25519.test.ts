import { assert, describe, it } from "@effect/vitest"
import { ed25519, ED25519_TORSION_SUBGROUP } from "@noble/curves/ed25519.js"
import * as Either from "effect/Either"
import { createPublicKey, randomBytes, verify as nodeVerify } from "node:crypto"
import { patientKeyFromSeed, signNonce, signPayload } from "../../src/careagent/CareAgentKeys.js"
import { decodeSignature, importPatientKey, keyWeakness, verify } from "../../src/consent/Ed25519.js"

const hex = (s: string) => new Uint8Array(Buffer.from(s, "hex"))
const b64u = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url")
const withSignBit = (raw: Uint8Array) => {
  const copy = Uint8Array.from(raw)
  copy[31] = copy[31]! | 0x80
  return copy
}

// Hand-written cross-check (libsodium's blocklist, little-endian y with the sign bit clear): the y of every
// small-order point, and the two non-canonical aliases y + p that still fit in 255 bits.
const SMALL_ORDER_Y = [
  "0000000000000000000000000000000000000000000000000000000000000000", // y = 0, order 4
  "0100000000000000000000000000000000000000000000000000000000000000", // y = 1, the identity
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p - 1, order 2
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a" // order 8
]
const NON_CANONICAL_SMALL_ORDER_Y = [
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p, i.e. 0
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f" // y = p + 1, i.e. 1
]

/** The reference verdict: a full RFC 8032 decoding by @noble/curves. */
const nobleVerdict = (raw: Uint8Array): "not_a_point" | "non_canonical" | "small_order" | "ok" => {
  let point
  try {
    point = ed25519.Point.fromBytes(raw, true)
  } catch {
    return "not_a_point"
  }
  if (Buffer.compare(point.toBytes(), raw) !== 0) return "non_canonical"
  return point.isSmallOrder() ? "small_order" : "ok"
}

describe("Ed25519 weak keys", () => {
  it("bare node:crypto accepts a forged (R = identity, S = 0) signature under the identity key: the trap", () => {
    const identity = hex(SMALL_ORDER_Y[1]!)
    const forged = new Uint8Array(64)
    forged.set(identity, 0)
    const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: b64u(identity) }, format: "jwk" })
    assert.isTrue(nodeVerify(null, Buffer.from("any message at all"), key, forged))
    // ... and ours refuses the key before verifying anything.
    const imported = importPatientKey(b64u(identity))
    assert.isTrue(Either.isLeft(imported) && imported.left.reason === "weak_key")
  })

  it("refuses all 8 small-order points (noble's torsion subgroup), in canonical encoding", () => {
    assert.strictEqual(ED25519_TORSION_SUBGROUP.length, 8)
    for (const encoding of ED25519_TORSION_SUBGROUP) {
      assert.strictEqual(keyWeakness(hex(encoding)), "small_order", encoding)
      assert.strictEqual(nobleVerdict(hex(encoding)), "small_order", encoding)
    }
  })

  it("refuses every small-order y with either sign bit, and its non-canonical aliases, as weak_key", () => {
    for (const y of [...SMALL_ORDER_Y, ...NON_CANONICAL_SMALL_ORDER_Y]) {
      for (const raw of [hex(y), withSignBit(hex(y))]) {
        assert.isDefined(keyWeakness(raw), b64u(raw))
        const imported = importPatientKey(b64u(raw))
        assert.isTrue(Either.isLeft(imported) && imported.left.reason === "weak_key", b64u(raw))
      }
    }
    // The sign-bit variants of y = ±1 are x = 0 with x_0 = 1, which RFC 8032 forbids: noble refuses them too.
    assert.notStrictEqual(nobleVerdict(withSignBit(hex(SMALL_ORDER_Y[1]!))), "ok")
  })

  it("the hand-written table and noble's torsion subgroup name the same y values", () => {
    const fromNoble = new Set(ED25519_TORSION_SUBGROUP.map((encoding) => {
      const raw = hex(encoding)
      raw[31] = raw[31]! & 0x7f
      return Buffer.from(raw).toString("hex")
    }))
    assert.deepStrictEqual(new Set(SMALL_ORDER_Y), fromNoble)
  })

  it("refuses every non-canonical encoding y >= p (p .. 2^255 - 1), with either sign bit", () => {
    const p = hex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
    for (let low = 0xed; low <= 0xff; low++) {
      const raw = Uint8Array.from(p)
      raw[0] = low
      for (const variant of [raw, withSignBit(raw)]) {
        assert.strictEqual(keyWeakness(variant), "non_canonical", b64u(variant))
        const verdict = nobleVerdict(variant)
        assert.isTrue(verdict === "non_canonical" || verdict === "not_a_point", verdict)
      }
    }
  })

  it("agrees with noble's full decoding on random keys, random encodings and points with a torsion part", () => {
    const samples: Array<Uint8Array> = []
    for (let i = 0; i < 300; i++) samples.push(patientKeyFromSeed(randomBytes(32)).publicKey)
    for (let i = 0; i < 300; i++) samples.push(new Uint8Array(randomBytes(32)))
    // A prime-order point plus a torsion point is of large (mixed) order: acceptable, not small.
    const base = ed25519.Point.fromBytes(samples[0]!)
    for (const t of ED25519_TORSION_SUBGROUP) samples.push(base.add(ed25519.Point.fromHex(t)).toBytes())
    let points = 0
    for (const raw of samples) {
      const verdict = nobleVerdict(raw)
      if (verdict === "not_a_point") continue
      points++
      assert.strictEqual(keyWeakness(raw) === undefined, verdict === "ok", b64u(raw))
    }
    assert.isAbove(points, 300) // every real key plus roughly half of the random encodings
  })

  it("an encoding that is not a curve point imports but never verifies", async () => {
    let raw: Uint8Array
    do raw = new Uint8Array(randomBytes(32))
    while (nobleVerdict(raw) !== "not_a_point" || keyWeakness(raw) !== undefined)
    const key = importPatientKey(b64u(raw))
    assert.isTrue(Either.isRight(key))
    if (Either.isRight(key)) {
      const forged = new Uint8Array(64)
      forged[0] = 1
      assert.isFalse(verify(key.right, Buffer.from("x"), forged))
    }
  })
})

describe("Ed25519 strict decoding", () => {
  const key = patientKeyFromSeed(new Uint8Array(32).fill(3))
  const signature = signPayload(key, "payload").consent_token_signature

  it("imports a canonical 43-character key once, keeping its text and raw bytes", () => {
    const imported = importPatientKey(key.publicKeyB64u)
    assert.isTrue(Either.isRight(imported))
    if (Either.isRight(imported)) {
      assert.strictEqual(imported.right.b64u, key.publicKeyB64u)
      assert.deepStrictEqual(imported.right.raw, Buffer.from(key.publicKey))
      assert.strictEqual(imported.right.keyObject.asymmetricKeyType, "ed25519")
    }
  })

  it("refuses a truncated, padded, non-base64url or wrong-length key as malformed, naming the field", () => {
    const text = key.publicKeyB64u
    const lastBitsSet = text.slice(0, 42) + String.fromCharCode(text.charCodeAt(42) + 1) // non-zero trailing bits
    for (
      const bad of [
        text.slice(0, 42),
        text + "=",
        text + "A",
        text.replace(/./, "+"),
        text.replace(/./, "/"),
        text.slice(0, 41) + " A",
        Buffer.from(key.publicKey).toString("base64"),
        "",
        lastBitsSet,
        42 as unknown
      ]
    ) {
      if (bad === text) continue
      const imported = importPatientKey(bad)
      assert.isTrue(Either.isLeft(imported), String(bad))
      if (Either.isLeft(imported)) {
        assert.strictEqual(imported.left.reason, "malformed")
        assert.match(imported.left.message, /^patient_public_key: must be an Ed25519 public key/)
      }
    }
  })

  it("refuses a truncated, padded, non-base64url or wrong-length signature as malformed", () => {
    assert.isTrue(Either.isRight(decodeSignature(signature, "signed_nonce")))
    const bad = [
      signature.slice(0, 85),
      signature + "==",
      signature + "AA",
      "+" + signature.slice(1),
      signature.slice(0, 84) + "!!",
      Buffer.from(signature, "base64url").toString("base64"),
      b64u(new Uint8Array(63))
    ]
    for (const s of bad) {
      const decoded = decodeSignature(s, "signed_nonce")
      assert.isTrue(Either.isLeft(decoded) && decoded.left.reason === "malformed", s)
      if (Either.isLeft(decoded)) assert.match(decoded.left.message, /^signed_nonce: must be an Ed25519 signature/)
    }
  })
})

describe("CareAgentKeys", () => {
  it("makes a key from a 32-byte seed as RFC 8032 says (test vector 1)", () => {
    const key = patientKeyFromSeed(hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    assert.strictEqual(
      Buffer.from(key.publicKey).toString("hex"),
      "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    assert.strictEqual(
      Buffer.from(signPayload(key, new Uint8Array(0)).consent_token_signature, "base64url").toString("hex"),
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
  })

  it("signs the 32 raw nonce bytes, and refuses a nonce that is not 64 lowercase hex", async () => {
    const key = patientKeyFromSeed(new Uint8Array(32).fill(9))
    const nonce = randomBytes(32)
    const imported = importPatientKey(key.publicKeyB64u)
    assert.isTrue(Either.isRight(imported))
    if (Either.isRight(imported)) {
      const signed = Buffer.from(signNonce(key, nonce.toString("hex")), "base64url")
      assert.isTrue(verify(imported.right, nonce, signed))
      assert.isFalse(verify(imported.right, Buffer.from(nonce.toString("hex")), signed))
    }
    assert.throws(() => signNonce(key, nonce.toString("hex").toUpperCase()))
    assert.throws(() => signNonce(key, nonce.toString("hex").slice(2)))
  })
})
