/**
 * Laravel Echo with AskrConnector on a token-guard page (no session: `bearerToken`, or the token
 * in `auth.headers`, sent as `Authorization: Bearer` in the one batch authorization request), with
 * the script builds (laravel-echo's echo.iife.js and askr-connector.iife.js): the whole Echo API
 * in Chromium (test/helpers/echo-suite.ts). Before issue 12, such a page got 403 for every
 * private channel.
 */
import { echoApiSuite } from './helpers/echo-suite.ts';

echoApiSuite('token', 'iife');
