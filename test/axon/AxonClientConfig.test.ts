import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { axonClientConfig, parseRegistryUrls } from "../../src/axon/AxonClientConfig.js"

const read = (env: Record<string, string>) =>
  Effect.either(Effect.withConfigProvider(axonClientConfig, ConfigProvider.fromMap(new Map(Object.entries(env)))))

describe("AxonClient configuration", () => {
  it("parses AXON_REGISTRY_URL as a comma-separated list, normalized and without duplicates", () => {
    assert.deepStrictEqual(
      parseRegistryUrls(" https://a.example/ , http://b.example:8600/axon/,https://a.example"),
      Either.right(["https://a.example", "http://b.example:8600/axon"])
    )
  })

  it("refuses URLs that are not http(s), carry credentials, a query, or list nothing", () => {
    for (const bad of ["ftp://a.example", "https://user:pw@a.example", "https://a.example/?t=1", "not a url", " , "]) {
      assert.isTrue(Either.isLeft(parseRegistryUrls(bad)), bad)
    }
    // The message never repeats credentials.
    const left = parseRegistryUrls("https://user:s3cret@a.example")
    assert.isTrue(Either.isLeft(left) && !left.left.includes("s3cret"))
  })

  it.effect("reads the defaults: 10 s time limit, no enrollment token", () =>
    Effect.gen(function*() {
      const config = yield* read({ AXON_REGISTRY_URL: "http://127.0.0.1:8600" })
      assert.isTrue(Either.isRight(config))
      if (Either.isRight(config)) {
        assert.deepStrictEqual(config.right.urls, ["http://127.0.0.1:8600"])
        assert.isTrue(Duration.equals(Duration.decode(config.right.timeout), Duration.millis(10_000)))
        assert.isTrue(Option.isNone(config.right.enrollmentToken))
      }
    }))

  it.effect("reads NEURON_AXON_TIMEOUT_MS and a redacted AXON_ENROLLMENT_TOKEN", () =>
    Effect.gen(function*() {
      const config = yield* read({
        AXON_REGISTRY_URL: "http://a,http://b",
        NEURON_AXON_TIMEOUT_MS: "250",
        AXON_ENROLLMENT_TOKEN: "enroll-me"
      })
      assert.isTrue(Either.isRight(config))
      if (Either.isRight(config)) {
        assert.strictEqual(config.right.urls.length, 2)
        assert.isTrue(Duration.equals(Duration.decode(config.right.timeout), Duration.millis(250)))
        const token = Option.getOrThrow(config.right.enrollmentToken)
        assert.strictEqual(Redacted.value(token), "enroll-me")
        assert.notInclude(String(token), "enroll-me")
      }
    }))

  it.effect("a bad setting is one error naming the variable", () =>
    Effect.gen(function*() {
      const badUrl = yield* read({ AXON_REGISTRY_URL: "ftp://x" })
      assert.isTrue(Either.isLeft(badUrl) && String(badUrl.left).includes("AXON_REGISTRY_URL"))
      const badTimeout = yield* read({ AXON_REGISTRY_URL: "http://a", NEURON_AXON_TIMEOUT_MS: "0" })
      assert.isTrue(Either.isLeft(badTimeout) && String(badTimeout.left).includes("NEURON_AXON_TIMEOUT_MS"))
      const missing = yield* read({})
      assert.isTrue(Either.isLeft(missing) && String(missing.left).includes("AXON_REGISTRY_URL"))
    }))
})
