import { assert, describe, it } from "@effect/vitest"
import { ConsentError, ConsentErrorReason, type ConsentWire, toWire } from "../../src/consent/ConsentError.js"

describe("ConsentError.toWire", () => {
  // The error table of PROTOCOL.md section 2, row by row.
  const table: Record<ConsentErrorReason, Omit<ConsentWire, "message">> = {
    malformed: { code: "INVALID_MESSAGE", closeCode: 4002 },
    challenge_expired: { code: "AUTH_TIMEOUT", closeCode: 4001 },
    weak_key: { code: "CONSENT_FAILED", closeCode: 4003 },
    invalid_signature: { code: "CONSENT_FAILED", closeCode: 4003 },
    expired: { code: "CONSENT_FAILED", closeCode: 4003 },
    not_yet_valid: { code: "CONSENT_FAILED", closeCode: 4003 },
    patient_mismatch: { code: "CONSENT_FAILED", closeCode: 4003 },
    wrong_organization: { code: "CONSENT_FAILED", closeCode: 4003 },
    invalid_provider_npi: { code: "CONSENT_FAILED", closeCode: 4003 },
    challenge_failed: { code: "CONSENT_FAILED", closeCode: 4003 },
    challenge_unknown: { code: "CONSENT_FAILED", closeCode: 4003 },
    key_mismatch: { code: "CONSENT_FAILED", closeCode: 4003 },
    // Section 8: a revocation outside its 5-minute window.
    outside_window: { code: "CONSENT_FAILED", closeCode: 4003 }
  }

  it("maps every reason to its wire code and close code, keeping the message", () => {
    assert.deepStrictEqual(Object.keys(table).sort(), [...ConsentErrorReason.literals].sort())
    for (const reason of ConsentErrorReason.literals) {
      const wire = toWire(new ConsentError({ reason, message: `because ${reason}` }))
      assert.deepStrictEqual(wire, { ...table[reason], message: `because ${reason}` }, reason)
    }
  })

  it("is a tagged error whose cause stays out of the wire", () => {
    const error = new ConsentError({ reason: "malformed", message: "m", cause: new Error("internal detail") })
    assert.strictEqual(error._tag, "ConsentError")
    assert.notInclude(JSON.stringify(toWire(error)), "internal detail")
  })
})
