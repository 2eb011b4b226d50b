import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { createServer } from "node:http"
import * as AxonRegistry from "../../src/registry/AxonRegistry.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { urlOf } from "../support/registry.js"
import { call, registration } from "./support.js"

// A host program with an HttpApi of its own, served on its own port, next to the embedded registry.
class Host extends HttpApi.make("host").add(
  HttpApiGroup.make("host").add(HttpApiEndpoint.get("hello", "/hello").addSuccess(Schema.String))
) {}

class HostUrl extends Context.Tag("test/HostUrl")<HostUrl, string>() {}
class RegistryUrl extends Context.Tag("test/RegistryUrl")<RegistryUrl, string>() {}

// A function: each call is a distinct layer, so each program gets a server of its own.
const server = () => NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })
const address = <I>(tag: Context.Tag<I, string>) => Layer.effect(tag, Effect.map(HttpServer.HttpServer, urlOf))

const HostLive = Layer.merge(
  HttpApiBuilder.serve().pipe(
    Layer.provide(
      HttpApiBuilder.api(Host).pipe(
        Layer.provide(
          HttpApiBuilder.group(Host, "host", (handlers) => handlers.handle("hello", () => Effect.succeed("hi")))
        )
      )
    )
  ),
  address(HostUrl)
).pipe(Layer.provide(server()))

describe("embedding", () => {
  it.scoped("AxonRegistry.layer in one Layer graph with a host's own HttpApi: each server answers only its own", () =>
    Effect.gen(function*() {
      const dataDir = yield* Sqlite.makeTempDir("axon-")
      const RegistryLive = Layer.merge(
        AxonRegistry.layer({ dataDir, enrollmentToken: Option.none() }),
        address(RegistryUrl)
      ).pipe(Layer.provide(server()))
      // One graph, one memo map: what a Neuron's main does.
      const context = yield* Layer.build(Layer.merge(HostLive, RegistryLive))
      const hostUrl = Context.get(context, HostUrl)
      const registryUrl = Context.get(context, RegistryUrl)
      assert.notStrictEqual(hostUrl, registryUrl)
      assert.strictEqual((yield* call(hostUrl, "GET", "/hello")).body, "hi")
      assert.strictEqual((yield* call(hostUrl, "GET", "/health")).status, 404)
      assert.strictEqual((yield* call(hostUrl, "POST", "/v1/neurons", { body: registration(1) })).status, 404)
      assert.strictEqual((yield* call(registryUrl, "GET", "/hello")).status, 404)
      assert.strictEqual((yield* call(registryUrl, "GET", "/health")).status, 200)
      assert.strictEqual((yield* call(registryUrl, "POST", "/v1/neurons", { body: registration(1) })).status, 201)
    }))
})
