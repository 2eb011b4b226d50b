/**
 * The admin rule (PROTOCOL.md sections 3 and 7), the implementation of the `AdminAuth` middleware:
 * - `Authorization: Bearer <admin token>` (compared in constant time): full access, never rate-limited.
 * - An API key (`X-API-Key: nrn_...`, or `Authorization: Bearer nrn_...`): it must be live (401 when unknown or
 *   revoked, whoever the peer is), its bucket must hold a token (429 with `Retry-After`), and a `read` key may only
 *   call GET routes (403). A key works from any peer, with or without an admin token configured.
 * - No credential: with an admin token configured, 401; without one, loopback peers only (403 for others).
 */
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { createHash, timingSafeEqual } from "node:crypto"
import { AdminAuth, RateLimited } from "../api/NeuronApi.js"
import { Forbidden, Unauthorized } from "../protocol/AxonApi.js"
import { ApiKeys } from "./ApiKeys.js"
import * as RateLimiter from "./RateLimiter.js"

const sha256 = (text: string) => createHash("sha256").update(text).digest()

/** True for a loopback peer (IPv4 127/8, IPv6 ::1, and IPv4-mapped loopback). */
export const isLoopback = (address: string): boolean =>
  address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127.")

const READ_METHODS = new Set(["GET", "HEAD"])

/** Options of `layer`. */
export interface AdminAccessOptions {
  readonly adminToken: Option.Option<Redacted.Redacted<string>>
  /** Requests per minute per API key (`NEURON_API_RATE_LIMIT`). */
  readonly apiRateLimit: number
}

/** The `AdminAuth` middleware, on the Neuron's `ApiKeys`. */
export const layer = (options: AdminAccessOptions): Layer.Layer<AdminAuth, never, ApiKeys> =>
  Layer.effect(
    AdminAuth,
    Effect.gen(function*() {
      const keys = yield* ApiKeys
      const limiter = RateLimiter.make(options.apiRateLimit)
      const expected = Option.map(options.adminToken, (t) => sha256(Redacted.value(t)))

      const withKey = (key: string, method: string) =>
        Effect.gen(function*() {
          const found = yield* keys.authenticate(key)
          if (Option.isNone(found)) {
            return yield* new Unauthorized({ message: "the API key is unknown or revoked" })
          }
          const { id, scope } = found.value
          const decision = yield* limiter.take(id)
          if (decision._tag === "Limited") {
            const retryAfter = String(decision.retryAfterSeconds)
            yield* HttpApp.appendPreResponseHandler((_request, response) =>
              Effect.succeed(HttpServerResponse.setHeader(response, "retry-after", retryAfter))
            )
            return yield* new RateLimited({
              message: `this API key is over its rate limit of ${options.apiRateLimit} requests per minute`
            })
          }
          if (scope === "read" && !READ_METHODS.has(method)) {
            return yield* new Forbidden({ message: "a read API key may only call the admin API's GET routes" })
          }
          return { actor: `api_key:${id}` }
        })

      return Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const bearer = /^Bearer (\S+)$/i.exec(request.headers["authorization"] ?? "")?.[1]
        if (bearer !== undefined && Option.isSome(expected) && timingSafeEqual(sha256(bearer), expected.value)) {
          return { actor: "admin" }
        }
        const key = request.headers["x-api-key"] ?? (bearer?.startsWith("nrn_") ? bearer : undefined)
        if (key !== undefined) return yield* withKey(key.trim(), request.method)
        if (Option.isSome(expected)) {
          return yield* new Unauthorized({
            message: "a valid admin token or API key is required (Authorization: Bearer ..., or X-API-Key)"
          })
        }
        const peer = Option.getOrElse(request.remoteAddress, () => "")
        if (!isLoopback(peer)) {
          return yield* new Forbidden({
            message:
              "admin routes answer loopback peers only; use an API key, or set NEURON_ADMIN_TOKEN, for remote administration"
          })
        }
        return { actor: "loopback" }
      })
    })
  )
