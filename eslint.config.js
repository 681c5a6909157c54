// ESLint flat config: typescript-eslint strictTypeChecked, with no-floating-promises on
// (it catches stream and socket bugs). Plain .js/.mjs helpers get the recommended set only.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  // php/js is linted (the browser client); its script build is generated from it.
  {
    ignores: [
      'node_modules/',
      'dist/',
      'coverage/',
      'fixtures-php/',
      'php/*',
      '!php/js/',
      'php/js/*.iife.js',
    ],
  },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [...tseslint.configs.strictTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-unnecessary-condition': 'off',
      '@typescript-eslint/no-confusing-void-expression': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ignores: ['php/js/**'],
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly' },
    },
  },
  {
    files: ['php/js/**/*.js'],
    // Browser code: only what it uses (no `globals` package in the dependencies).
    languageOptions: {
      globals: Object.fromEntries(
        [
          'AbortController',
          'BroadcastChannel',
          'TextDecoder',
          'URL',
          'URLSearchParams',
          'clearTimeout',
          'console',
          'fetch',
          'queueMicrotask',
          'setTimeout',
        ].map((name) => [name, 'readonly']),
      ),
    },
  },
);
