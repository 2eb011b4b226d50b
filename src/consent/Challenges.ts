/**
 * The outstanding handshake challenges: 32 fresh random bytes per challenge, sent as 64 lowercase hex,
 * bound to one connection and to the key it was issued for, taken out at most once.
 *
 * Every operation is synchronous, so a read and its removal happen in one step: two fibers answering the
 * same nonce can never both take it. Time is passed in (from `Clock`) so that expiry is testable.
 */
import { randomBytes } from "node:crypto"
import type { PatientKey } from "./Ed25519.js"

/** One issued challenge. */
export interface Challenge {
  /** 64 lowercase hex characters. */
  readonly nonce: string
  /** The 32 raw bytes the patient signs. */
  readonly bytes: Buffer
  readonly connectionId: string
  /** The key the consent token was verified with; the answer must be signed by the same key. */
  readonly key: PatientKey
  readonly expiresAtMillis: number
}

/** Matches a nonce as the protocol sends it: 64 lowercase hex characters. */
export const NONCE_PATTERN = /^[0-9a-f]{64}$/

/** The mutable book of outstanding challenges, owned by one `ConsentVerifier`. */
export class ChallengeBook {
  private readonly byNonce = new Map<string, Challenge>()
  private readonly byConnection = new Map<string, string>()

  /**
   * @param ttlMillis how long a challenge may be answered. Entries left behind by a host that never calls
   * `forget` are swept lazily once they are `ttlMillis` past their expiry: until then a late answer still
   * learns "expired" rather than "unknown".
   */
  constructor(readonly ttlMillis: number) {}

  /** How many challenges are outstanding (for metrics and tests). */
  get size(): number {
    return this.byNonce.size
  }

  /** Issues a fresh challenge for `connectionId`, replacing any earlier one of that connection. */
  issue(connectionId: string, key: PatientKey, nowMillis: number): Challenge {
    this.sweep(nowMillis)
    this.forget(connectionId)
    const bytes = randomBytes(32)
    const challenge: Challenge = {
      nonce: bytes.toString("hex"),
      bytes,
      connectionId,
      key,
      expiresAtMillis: nowMillis + this.ttlMillis
    }
    this.byNonce.set(challenge.nonce, challenge)
    this.byConnection.set(connectionId, challenge.nonce)
    return challenge
  }

  /**
   * Removes and returns the challenge `nonce` when it was issued to `connectionId`. A nonce of another
   * connection is left in place (and `undefined` returned): a stranger's guess must not cancel it.
   */
  take(connectionId: string, nonce: string): Challenge | undefined {
    const challenge = this.byNonce.get(nonce)
    if (challenge === undefined || challenge.connectionId !== connectionId) return undefined
    this.byNonce.delete(nonce)
    this.byConnection.delete(connectionId)
    return challenge
  }

  /** Drops the outstanding challenge of `connectionId`, if any (its socket has closed). */
  forget(connectionId: string): void {
    const nonce = this.byConnection.get(connectionId)
    if (nonce === undefined) return
    this.byConnection.delete(connectionId)
    this.byNonce.delete(nonce)
  }

  // Challenges all live for the same time, so insertion order is expiry order: the sweep stops at the
  // first entry that is not yet stale, which keeps each `issue` O(1) amortized.
  private sweep(nowMillis: number): void {
    for (const challenge of this.byNonce.values()) {
      if (challenge.expiresAtMillis + this.ttlMillis > nowMillis) return
      this.byNonce.delete(challenge.nonce)
      if (this.byConnection.get(challenge.connectionId) === challenge.nonce) {
        this.byConnection.delete(challenge.connectionId)
      }
    }
  }
}
