// Lint and format in one pass: typescript-eslint's recommended rules, and dprint through
// Effect's own ESLint plugin with the settings the Effect repository uses (`pnpm lint --fix` formats).
import effect from "@effect/eslint-plugin"
import tseslint from "typescript-eslint"

export default tseslint.config(
  { ignores: ["node_modules/**", "data/**", ".bench/**", "coverage/**", "dist/**"] },
  ...tseslint.configs.recommended,
  ...effect.configs.dprint,
  {
    plugins: { "@effect": effect },
    rules: {
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-namespace": "off",
      "@typescript-eslint/no-empty-object-type": "off",
      "no-console": ["error"]
    }
  },
  {
    // Programs that talk to a person on a terminal: the entry points, benchmarks and the demo.
    files: ["src/main.ts", "src/**/main.ts", "test/crash/main.ts", "bench/**", "demo/**"],
    rules: { "no-console": "off" }
  }
)
