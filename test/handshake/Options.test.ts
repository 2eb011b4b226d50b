import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { normalizeOrigin, optionsConfig, resolveOptions } from "../../src/handshake/HandshakeServerOptions.js"

const read = (env: Record<string, string>) =>
  Effect.withConfigProvider(optionsConfig, ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("HandshakeServer options", () => {
  it.effect("layerConfig reads NEURON_* with the contract's defaults", () =>
    Effect.gen(function*() {
      const defaults = resolveOptions(yield* read({}))
      assert.strictEqual(defaults.publicUrl, "http://127.0.0.1:8700")
      assert.strictEqual(Duration.toMillis(defaults.authTimeout), 10_000)
      assert.strictEqual(defaults.maxConcurrentHandshakes, 1000)
      assert.strictEqual(Duration.toMillis(defaults.queueTimeout), 30_000)
      assert.strictEqual(defaults.maxPayloadBytes, 65_536)
      assert.isTrue(Option.isNone(defaults.allowedOrigins))

      const set = resolveOptions(
        yield* read({
          NEURON_PUBLIC_URL: "https://neuron.example.org/",
          NEURON_AUTH_TIMEOUT_MS: "2500",
          NEURON_MAX_CONCURRENT_HANDSHAKES: "2",
          NEURON_QUEUE_TIMEOUT_MS: "100",
          NEURON_MAX_PAYLOAD_BYTES: "1024",
          NEURON_ALLOWED_ORIGINS: " https://App.example.org , http://localhost:3000 ,"
        })
      )
      assert.strictEqual(set.publicUrl, "https://neuron.example.org")
      assert.strictEqual(Duration.toMillis(set.authTimeout), 2500)
      assert.strictEqual(set.maxConcurrentHandshakes, 2)
      assert.strictEqual(set.maxPayloadBytes, 1024)
      assert.deepStrictEqual(Option.getOrThrow(set.allowedOrigins), [
        "https://app.example.org",
        "http://localhost:3000"
      ])
      assert.strictEqual(
        resolveOptions(yield* read({ NEURON_HOST: "0.0.0.0", NEURON_PORT: "9" })).publicUrl,
        "http://0.0.0.0:9"
      )
    }))

  it.effect("a bad value names its variable", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(read({ NEURON_MAX_CONCURRENT_HANDSHAKES: "0" }))
      assert.include(String(error), "NEURON_MAX_CONCURRENT_HANDSHAKES")
    }))

  it("origins compare as browsers send them", () => {
    assert.strictEqual(normalizeOrigin("HTTPS://App.Example.org:443"), "https://app.example.org")
    assert.strictEqual(normalizeOrigin("http://localhost:3000/"), "http://localhost:3000")
    assert.strictEqual(normalizeOrigin("null"), "null")
  })
})
