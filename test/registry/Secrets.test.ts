import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { sharedServer } from "../support/postgres.js"
import { startRegistryWithServices, STORES, sweepAt } from "../support/registry.js"
import { type Answer, call, heartbeat, npi, register, registration } from "./support.js"

/** A logger that keeps every line, formatted as logfmt (message, annotations, cause). */
const capture = () => {
  const lines: Array<string> = []
  const logger = Logger.make((options) => {
    lines.push(Logger.logfmtLogger.log(options))
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

for (const store of STORES) {
  describe(`secrets (${store})`, () => {
    it.scoped("no token in any response but the registration answer, nor in any log line", () =>
      Effect.gen(function*() {
        const logs = capture()
        const enrollment = "the-enrollment-token-do-not-log"
        const { monitor, sql, url } = yield* startRegistryWithServices({ store, enrollmentToken: enrollment }).pipe(
          Effect.provide(logs.layer),
          Logger.withMinimumLogLevel(LogLevel.All)
        )
        const answers: Array<Answer> = []
        const keep = <E, R>(effect: Effect.Effect<Answer, E, R>) => Effect.tap(effect, (answer) => answers.push(answer))

        const a = yield* register(url, 1, { enrollment, extra: { heartbeat_interval_s: 10 } })
        const b = yield* register(url, 2, { enrollment })
        const a2 = yield* register(url, 1, { enrollment, extra: { heartbeat_interval_s: 10 } }) // rotation
        const forged = a2.bearer_token.slice(0, 40) + "AAA"
        // On PostgreSQL the database password is one more secret.
        const secrets = [enrollment, a.bearer_token, b.bearer_token, a2.bearer_token, forged]
        if (store === "postgres") secrets.push(sharedServer().password)

        yield* keep(call(url, "POST", "/v1/neurons", { body: registration(1) })) // 401: no enrollment token
        yield* keep(call(url, "POST", "/v1/neurons", { body: registration(3), token: a2.bearer_token })) // wrong token
        yield* keep(heartbeat(url, a2.registration_id, a2.bearer_token))
        yield* keep(heartbeat(url, a2.registration_id, a.bearer_token)) // retired token: 401
        yield* keep(heartbeat(url, a2.registration_id, forged))
        yield* keep(heartbeat(url, a2.registration_id, b.bearer_token)) // another neuron's: 403
        yield* keep(
          call(url, "PUT", `/v1/neurons/${a2.registration_id}/endpoint`, { token: a2.bearer_token, raw: "{" })
        )
        yield* keep(call(url, "GET", `/v1/neurons/${a2.registration_id}`, { token: a2.bearer_token }))
        yield* keep(call(url, "POST", `/v1/neurons/${a2.registration_id}/providers`, {
          token: a2.bearer_token,
          body: { provider_npi: npi(9) }
        }))
        yield* keep(call(url, "GET", `/v1/neurons/${a2.registration_id}/providers`, { token: a2.bearer_token }))
        yield* keep(call(url, "GET", "/v1/neurons"))
        yield* keep(call(url, "GET", `/v1/registry/${npi(9)}`))
        yield* keep(call(url, "GET", "/health"))
        yield* keep(call(url, "GET", "/stats"))
        yield* keep(call(url, "GET", "/openapi.json"))
        yield* keep(call(url, "DELETE", `/v1/neurons/${b.registration_id}`, { token: b.bearer_token }))
        yield* keep(heartbeat(url, b.registration_id, b.bearer_token)) // deregistered: 404
        // The monitor's alerts: a2 goes down, then comes back.
        yield* sweepAt(monitor, 25_000)
        yield* keep(heartbeat(url, a2.registration_id, a2.bearer_token))
        yield* keep(call(url, "GET", "/alerts"))
        // An unexpected failure: 500 SERVER_ERROR, nothing of the cause in the answer, the cause in the log.
        yield* sql`DROP TABLE providers`.pipe(Effect.orDie)
        const broken = yield* keep(call(url, "POST", `/v1/neurons/${a2.registration_id}/providers`, {
          token: a2.bearer_token,
          body: { provider_npi: npi(10) }
        }))
        assert.strictEqual(broken.status, 500)
        assert.deepStrictEqual(broken.body, {
          error: { code: "SERVER_ERROR", message: "the registry could not complete this request" }
        })
        assert.isTrue(
          logs.lines.some((line) =>
            line.includes("unexpected failure") && line.includes(
              store === "sqlite" ? "no such table: providers" : `providers\\" does not exist`
            )
          )
        )

        assert.deepStrictEqual(answers.map((answer) => answer.status), [
          401,
          401,
          200,
          401,
          401,
          403,
          400,
          200,
          201,
          200,
          200,
          200,
          200,
          200,
          200,
          204,
          404,
          200,
          200,
          500
        ])
        for (const answer of answers) {
          for (const secret of secrets) assert.notInclude(answer.text, secret)
        }
        assert.isAbove(logs.lines.length, 5)
        assert.isTrue(logs.lines.some((line) => line.includes("bearer token rotated")))
        assert.isTrue(logs.lines.some((line) => line.includes("neuron_recovered")))
        for (const line of logs.lines) {
          for (const secret of secrets) assert.notInclude(line, secret)
        }
      }))
  })
}
