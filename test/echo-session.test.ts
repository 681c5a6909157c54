/**
 * Laravel Echo (the real laravel-echo 2.x) with AskrConnector, as ES modules, on a session-guard
 * page of the Laravel fixture: the whole Echo API in Chromium (test/helpers/echo-suite.ts).
 */
import { echoApiSuite } from './helpers/echo-suite.ts';

echoApiSuite('session', 'esm');
