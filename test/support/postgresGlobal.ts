/**
 * vitest global setup: one throwaway PostgreSQL server for the whole run (`postgresServer.ts`), handed to the
 * test files as `inject("postgres")`; each test makes its own database on it. A server that cannot start fails
 * the run: the PostgreSQL tests never skip.
 */
import type { TestProject } from "vitest/node"
import { startPostgresServer } from "./postgresServer.js"

declare module "vitest" {
  export interface ProvidedContext {
    postgres: { readonly port: number; readonly password: string }
  }
}

export default async function setup(project: TestProject) {
  const server = await startPostgresServer()
  project.provide("postgres", { port: server.port, password: server.password })
  return () => server.destroy()
}
