<?php

/** Laravel's default handler: AccessDeniedHttpException -> 403, unauthenticated -> login / 401. */

declare(strict_types=1);

namespace App\Exceptions;

use Illuminate\Foundation\Exceptions\Handler as ExceptionHandler;

class Handler extends ExceptionHandler
{
    protected $dontFlash = ['password'];
}
