import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { Base64UrlFixed, Ed25519PublicKey, Ed25519Signature, isCanonicalBase64Url } from "../src/domain/Base64Url.js"
import { isValidNpi, Npi, withCheckDigit } from "../src/domain/Npi.js"
import { describeParseError, wire } from "../src/http/ErrorBody.js"
import * as Sqlite from "../src/sql/Sqlite.js"

describe("Npi", () => {
  it("accepts the CMS examples and refuses a wrong check digit", () => {
    assert.isTrue(isValidNpi("1234567893"))
    assert.isTrue(isValidNpi("1558598797"))
    assert.isFalse(isValidNpi("1234567898"))
  })

  it("withCheckDigit completes nine digits into the valid NPI, and only that check digit is valid", () => {
    assert.strictEqual(withCheckDigit("123456789"), "1234567893")
    assert.strictEqual(withCheckDigit("155859879"), "1558598797")
    for (let check = 0; check <= 9; check++) {
      assert.strictEqual(isValidNpi("123456789" + check), check === 3)
    }
  })

  it("refuses wrong lengths, a leading digit other than 1 or 2, and non-digits", () => {
    for (
      const bad of ["123456789", "12345678931", "3234567893", "123456789a", " 1234567893", "１２３４５６７８９３", ""]
    ) {
      assert.isFalse(isValidNpi(bad), bad)
    }
  })

  it("decodes as a Schema with a message that says what an NPI is", () => {
    assert.strictEqual(Schema.decodeUnknownSync(Npi)("1234567893"), "1234567893")
    const result = Schema.decodeUnknownEither(Schema.Struct({ organization_npi: Npi }))({
      organization_npi: "1234567898"
    })
    assert.isTrue(Either.isLeft(result))
    if (Either.isLeft(result)) {
      assert.match(describeParseError(result.left), /^organization_npi: must be a valid NPI/)
    }
  })
})

describe("Base64Url", () => {
  const key = new Uint8Array(32).fill(7)
  const text = Buffer.from(key).toString("base64url")

  it("round-trips an exact-length value", () => {
    assert.strictEqual(text.length, 43)
    assert.deepStrictEqual(Schema.decodeUnknownSync(Ed25519PublicKey)(text), key)
    assert.strictEqual(Schema.encodeSync(Ed25519PublicKey)(key), text)
  })

  it("refuses padding, the standard alphabet, stray characters, wrong lengths and non-zero trailing bits", () => {
    const bad = [
      text + "=",
      text.slice(0, 42),
      text + "A",
      text.slice(0, 40) + "+/A",
      text.slice(0, 20) + " " + text.slice(21),
      text.slice(0, 42) + "z" // the last character of 32 bytes carries 2 unused bits; 'z' sets them
    ]
    for (const s of bad) {
      assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(Ed25519PublicKey)(s)), JSON.stringify(s))
    }
    assert.isFalse(isCanonicalBase64Url("AA=="))
    assert.isTrue(isCanonicalBase64Url("AA"))
  })

  it("names the expected size in its message", () => {
    const sig = Schema.decodeUnknownEither(Schema.Struct({ signature: Ed25519Signature }))({ signature: "abc" })
    assert.isTrue(Either.isLeft(sig))
    if (Either.isLeft(sig)) {
      assert.match(describeParseError(sig.left), /signature: must be an Ed25519 signature: 64 bytes .*86 characters/)
    }
    assert.isTrue(Either.isRight(Schema.decodeUnknownEither(Base64UrlFixed(1, "one byte"))("AA")))
  })
})

describe("Sqlite", () => {
  it.scoped("opens a migrated WAL database with synchronous = FULL, again after a reopen", () =>
    Effect.gen(function*() {
      const dir = yield* Sqlite.makeTempDir()
      const filename = `${dir}/nested/test.db`
      const migrations = {
        "0001_items": Effect.flatMap(SqlClient.SqlClient, (sql) => sql`CREATE TABLE items (id INTEGER PRIMARY KEY)`)
      }
      const pragmas = Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`INSERT INTO items DEFAULT VALUES`
        const [mode] = yield* sql<{ journal_mode: string }>`PRAGMA journal_mode`
        const [sync] = yield* sql<{ synchronous: number }>`PRAGMA synchronous`
        const [count] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM items`
        return { mode: mode.journal_mode, sync: sync.synchronous, count: count.n }
      })
      const first = yield* Effect.provide(pragmas, Sqlite.layer({ filename, migrations }))
      const second = yield* Effect.provide(pragmas, Sqlite.layer({ filename, migrations }))
      assert.deepStrictEqual(first, { mode: "wal", sync: 2, count: 1 })
      // Reopened: the migration is not run twice, the row is kept, and FULL is set again.
      assert.deepStrictEqual(second, { mode: "wal", sync: 2, count: 2 })
    }))
})

describe("ErrorBody", () => {
  class Teapot extends Schema.TaggedError<Teapot>()("Teapot", { message: Schema.String }) {}
  const Api = HttpApi.make("t").add(
    HttpApiGroup.make("g").add(
      HttpApiEndpoint.get("brew", "/brew").addSuccess(Schema.String)
        .addError(wire(Teapot, { tag: "Teapot", code: "I_AM_A_TEAPOT", status: 418 }))
    )
  )
  const ApiLive = HttpApiBuilder.api(Api).pipe(
    Layer.provide(
      HttpApiBuilder.group(
        Api,
        "g",
        (h) => h.handle("brew", () => Effect.fail(new Teapot({ message: "short and stout" })))
      )
    )
  )

  it.scoped("serves a typed error as {error:{code,message}} with its status", () =>
    Effect.gen(function*() {
      yield* Layer.launch(HttpApiBuilder.serve().pipe(Layer.provide(ApiLive))).pipe(Effect.forkScoped)
      const client = yield* HttpClient.HttpClient
      const response = yield* client.execute(HttpClientRequest.get("/brew")).pipe(Effect.retry({ times: 20 }))
      assert.strictEqual(response.status, 418)
      assert.deepStrictEqual(yield* response.json, { error: { code: "I_AM_A_TEAPOT", message: "short and stout" } })
    }).pipe(Effect.provide(NodeHttpServer.layerTest)))
})
