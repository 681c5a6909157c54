<!doctype html>
<html lang="en">
<head>
    <meta charset="utf-8">
    <title>Sign in</title>
</head>
<body>
<h1>Sign in</h1>
@if ($errors->any())
    <p id="error">{{ $errors->first() }}</p>
@endif
<form id="login" method="POST" action="/login">
    @csrf
    <label>Email <input name="email" type="email" value="{{ old('email') }}"></label>
    <label>Password <input name="password" type="password"></label>
    <button type="submit">Sign in</button>
</form>
</body>
</html>
