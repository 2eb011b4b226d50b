/**
 * The registration served ahead of the router (issue 14, `RegistrationFastPath.ts`) answers what `AxonApi`'s
 * `register` endpoint answers: the body text its schema encodes, the statuses and error bodies of the contract; and
 * a request it hands to the router after reading its body still gets the router's own `400`. On both stores.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { NeuronRegistered, NeuronReregistered } from "../../src/protocol/AxonApi.js"
import { startRegistry, STORES } from "../support/registry.js"
import { call, heartbeat, registration } from "./support.js"

const ENROLLMENT = "enrollment-token-for-the-fast-path-test"

/** The text `schema` encodes for the value it decodes from `text`: the route's own answer for that value. */
const encodedBySchema = <A, I>(schema: Schema.Schema<A, I>, text: string) =>
  JSON.stringify(Schema.encodeSync(schema)(Schema.decodeUnknownSync(schema)(JSON.parse(text))))

for (const store of STORES) {
  describe(`registration fast path (${store})`, () => {
    it.scoped("a registration answers 201 with the text NeuronRegistered encodes, and the token works", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistry({ store })
        const answer = yield* call(url, "POST", "/v1/neurons", { body: registration(1, { heartbeat_interval_s: 20 }) })
        assert.strictEqual(answer.status, 201, answer.text)
        assert.match(answer.contentType, /^application\/json/)
        assert.strictEqual(answer.text, encodedBySchema(NeuronRegistered, answer.text))
        assert.deepStrictEqual(Object.keys(answer.body), [
          "registration_id",
          "bearer_token",
          "status",
          "heartbeat_interval_s",
          "ttl_s"
        ])
        assert.strictEqual(answer.body.heartbeat_interval_s, 20)
        assert.strictEqual(answer.body.ttl_s, 60)
        assert.strictEqual(
          (yield* heartbeat(url, answer.body.registration_id, answer.body.bearer_token)).status,
          200
        )
      }))

    it.scoped("development mode: a second registration of a live NPI is 409 ALREADY_REGISTERED", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistry({ store })
        assert.strictEqual((yield* call(url, "POST", "/v1/neurons", { body: registration(2) })).status, 201)
        const again = yield* call(url, "POST", "/v1/neurons", { body: registration(2) })
        assert.strictEqual(again.status, 409, again.text)
        assert.strictEqual(again.body.error.code, "ALREADY_REGISTERED")
      }))

    it.scoped("with enrollment: 401 without the token, 201 with it, and a rotation answers 200 with the same id", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistry({ store, enrollmentToken: ENROLLMENT })
        const refused = yield* call(url, "POST", "/v1/neurons", { body: registration(3) })
        assert.strictEqual(refused.status, 401, refused.text)
        assert.strictEqual(refused.body.error.code, "UNAUTHORIZED")
        const first = yield* call(url, "POST", "/v1/neurons", { body: registration(3), token: ENROLLMENT })
        assert.strictEqual(first.status, 201, first.text)
        const rotated = yield* call(url, "POST", "/v1/neurons", { body: registration(3), token: ENROLLMENT })
        assert.strictEqual(rotated.status, 200, rotated.text)
        assert.strictEqual(rotated.text, encodedBySchema(NeuronReregistered, rotated.text))
        assert.strictEqual(rotated.body.registration_id, first.body.registration_id)
        assert.notStrictEqual(rotated.body.bearer_token, first.body.bearer_token)
      }))

    it.scoped("a body read ahead of the router and handed on gets the router's 400 naming the field", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistry({ store })
        const answer = yield* call(url, "POST", "/v1/neurons", {
          body: registration(4, { neuron_endpoint_url: "ftp://neuron.example.org" })
        })
        assert.strictEqual(answer.status, 400, answer.text)
        assert.strictEqual(answer.body.error.code, "INVALID_REQUEST")
        assert.isTrue(answer.body.error.message.startsWith("neuron_endpoint_url: "), answer.body.error.message)
        // Nothing was registered: the same NPI registers afterwards.
        assert.strictEqual((yield* call(url, "POST", "/v1/neurons", { body: registration(4) })).status, 201)
      }))
  })
}
