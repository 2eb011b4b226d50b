/**
 * The group commit of registrations (issue 14, `GroupCommit.ts`): concurrent registrations go to the store in one
 * transaction and each is answered after it committed, with its own id and token; a registration the batch cannot
 * hold fails alone, with its own error; at low load a registration is committed alone. On both stores, with the
 * real registry over HTTP and its real store.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Scope from "effect/Scope"
import { registrationBatchSize } from "../../src/registry/RegistryStore.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { databaseFor, startRegistryWithServices, STORES } from "../support/registry.js"
import { call, registration } from "./support.js"

const ENROLLMENT = "enrollment-token-for-the-group-commit-test"

/** How many transactions the registrations' group commit has committed so far, and how many items in all. */
const committed = Effect.map(
  Metric.value(registrationBatchSize),
  (state) => ({ batches: state.count, items: state.sum })
)

const registerAll = (url: string, numbers: ReadonlyArray<number>, token?: string) =>
  Effect.forEach(
    numbers,
    (n) => call(url, "POST", "/v1/neurons", { body: registration(n), ...(token === undefined ? {} : { token }) }),
    { concurrency: "unbounded" }
  )

for (const store of STORES) {
  describe(`group commit of registrations (${store})`, () => {
    it.scoped("group commit: many concurrent registrations are each answered with their own id and token, and all are there after a restart", () =>
      Effect.gen(function*() {
        const dataDir = yield* Sqlite.makeTempDir("axon-")
        const database = yield* databaseFor(store)
        const first = yield* Scope.make()
        const before = yield* startRegistryWithServices({ ...database, dataDir }).pipe(Scope.extend(first))
        const numbers = Array.from({ length: 48 }, (_, i) => 100 + i)
        const was = yield* committed
        const answers = yield* registerAll(before.url, numbers)
        const now = yield* committed
        for (const answer of answers) assert.strictEqual(answer.status, 201, answer.text)
        assert.strictEqual(new Set(answers.map((a) => a.body.registration_id)).size, numbers.length)
        assert.strictEqual(new Set(answers.map((a) => a.body.bearer_token)).size, numbers.length)
        assert.strictEqual(now.items - was.items, numbers.length)
        yield* Scope.close(first, Exit.void)

        const after = yield* startRegistryWithServices({ ...database, dataDir })
        yield* Effect.forEach(answers, (answer, i) =>
          Effect.gen(function*() {
            const view = yield* call(after.url, "GET", `/v1/neurons/${answer.body.registration_id}`, {
              token: answer.body.bearer_token
            })
            assert.strictEqual(view.status, 200, view.text)
            assert.strictEqual(view.body.organization_npi, registration(numbers[i]!).organization_npi)
          }), { concurrency: 8 })
        assert.strictEqual((yield* call(after.url, "GET", "/stats")).body.total_neurons, numbers.length)
      }))

    it.scoped("group commit: registrations made at the same moment share a transaction, answered after it commits", () =>
      Effect.gen(function*() {
        const { sql, store: registry } = yield* startRegistryWithServices({ store })
        const requests = Array.from({ length: 24 }, (_, i) => registration(200 + i))
        const was = yield* committed
        const answers = yield* Effect.forEach(requests, (request) =>
          // Straight to the store: the registrations reach it in the same turn of the event loop.
          Effect.flatMap(
            Effect.orDie(Effect.suspend(() => registry.register(request as any, undefined))),
            ({ entry }) =>
              // Answered after the commit: the row is already in the database.
              Effect.map(
                sql<{ n: number }>`SELECT count(*) AS n FROM neurons WHERE registration_id = ${entry.registrationId}`
                  .pipe(Effect.orDie),
                ([row]) => Number(row!.n)
              )
          ), { concurrency: "unbounded" })
        const now = yield* committed
        assert.deepStrictEqual(answers, requests.map(() => 1))
        assert.strictEqual(now.items - was.items, requests.length)
        assert.isBelow(now.batches - was.batches, requests.length, "registrations shared transactions")
      }))

    it.scoped("group commit: one conflicting registration in a batch fails alone with 409 naming organization_npi, the others succeed", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistryWithServices({ store })
        // Organization 300 twice among others, all at once: one of the two is registered, the other refused.
        const numbers = [301, 302, 300, 303, 304, 300, 305, 306]
        const answers = yield* registerAll(url, numbers)
        const refused = answers.filter((a) => a.status !== 201)
        assert.strictEqual(refused.length, 1, answers.map((a) => a.text).join("\n"))
        assert.strictEqual(refused[0]!.status, 409)
        assert.strictEqual(refused[0]!.body.error.code, "ALREADY_REGISTERED")
        assert.match(refused[0]!.body.error.message, /^organization_npi is already registered/)
        assert.strictEqual(answers.filter((a) => a.status === 201).length, numbers.length - 1)
        const listed = yield* call(url, "GET", "/v1/neurons?limit=100")
        assert.strictEqual(listed.body.neurons.length, numbers.length - 1)
      }))

    it.scoped("group commit: a conflicting registration in the same batch as others fails alone, the others are committed", () =>
      Effect.gen(function*() {
        const { store: registry } = yield* startRegistryWithServices({ store })
        const numbers = [601, 600, 602, 603, 600, 604]
        const was = yield* committed
        // Straight to the store, all in one turn of the event loop: one batch holds both registrations of 600.
        const outcomes = yield* Effect.forEach(
          numbers,
          (n) => Effect.either(Effect.suspend(() => registry.register(registration(n) as any, undefined))),
          { concurrency: "unbounded" }
        )
        const now = yield* committed
        const refused = outcomes.flatMap((o) => o._tag === "Left" ? [o.left] : [])
        assert.strictEqual(refused.length, 1)
        assert.strictEqual(refused[0]!._tag, "AlreadyRegistered")
        assert.match(refused[0]!.message, /^organization_npi is already registered/)
        const registered = outcomes.flatMap((o) => o._tag === "Right" ? [o.right.entry.organizationNpi] : [])
        assert.deepStrictEqual(
          [...registered].sort(),
          [...new Set(numbers)].map((n) => registration(n).organization_npi).sort()
        )
        if (store === "sqlite") {
          // SQLite's unique index refused the batch holding both: each registration was committed again alone.
          assert.strictEqual(now.batches - was.batches, numbers.length)
        } else {
          // PostgreSQL's `ON CONFLICT DO NOTHING` left the second out of the one statement: one transaction.
          assert.strictEqual(now.batches - was.batches, 1)
        }
      }))

    it.scoped("group commit: with the enrollment token, two registrations of one organization in a batch register and then rotate", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistryWithServices({ store, enrollmentToken: ENROLLMENT })
        const answers = yield* registerAll(url, [400, 401, 400, 402], ENROLLMENT)
        assert.deepStrictEqual(answers.map((a) => a.status).sort(), [200, 201, 201, 201])
        const [a, b] = [answers[0]!.body, answers[2]!.body]
        assert.strictEqual(a.registration_id, b.registration_id)
        // The later of the two holds the live token; the other was rotated away.
        const rotated = answers[0]!.status === 200 ? a : b
        const retired = rotated === a ? b : a
        const get = (token: string) => call(url, "GET", `/v1/neurons/${a.registration_id}`, { token })
        assert.strictEqual((yield* get(rotated.bearer_token)).status, 200)
        assert.strictEqual((yield* get(retired.bearer_token)).status, 401)
      }))

    it.scoped("group commit: at low load each registration is committed alone, with no wait for company", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistryWithServices({ store })
        const was = yield* committed
        for (const n of [500, 501, 502]) {
          assert.strictEqual((yield* call(url, "POST", "/v1/neurons", { body: registration(n) })).status, 201)
        }
        const now = yield* committed
        assert.deepStrictEqual({ batches: now.batches - was.batches, items: now.items - was.items }, {
          batches: 3,
          items: 3
        })
      }))
  })
}
