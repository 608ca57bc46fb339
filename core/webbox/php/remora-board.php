<?php
// remora-board.php — a drop-box for remora's static web file box, for
// circles whose only web space is shared PHP hosting. It stores and serves
// the circle's sealed presence entries and nothing else: opaque board keys
// (r + 32 base32 letters) with base64 values of at most 4 KiB, at most 256
// entries, each dropped 7 days after its last write. It cannot read what it
// stores (the entries are sealed by the circle's members).
//
//   GET   → the board file ("remora-board v1", then "KEY TIME VALUE"
//           lines), with an ETag; If-None-Match answers 304.
//   POST  key=KEY&value=BASE64 (value empty: delete KEY) [&token=TOKEN]
//
// Install: copy this file to your web space (e.g. remora-board.php) and set
// [web] url = "https://your.host/remora-board.php", publish = "dropbox" in
// config.toml. Optional: set REMORA_BOARD_TOKEN below (or in the
// environment) and the same token as the [web] token secret, so that only
// the circle can write. Entries live in REMORA_BOARD_DIR (default: a
// "remora-board" folder next to this file; keep it out of the web root if
// the host allows).

$TOKEN = getenv('REMORA_BOARD_TOKEN') ?: '';
$DIR = getenv('REMORA_BOARD_DIR') ?: __DIR__ . '/remora-board';
$MAX_ENTRIES = 256;
$MAX_VALUE = 4096;
$MAX_AGE = 7 * 24 * 3600;

function fail($code, $msg) {
    http_response_code($code);
    header('Content-Type: text/plain');
    echo $msg, "\n";
    exit;
}

if (!is_dir($DIR) && !@mkdir($DIR, 0700, true)) {
    fail(500, 'cannot create the board folder');
}
$file = $DIR . '/board.txt';
$lock = fopen($DIR . '/board.lock', 'c'); // writes replace board.txt: lock a file that stays

// load reads the entries: key => [time, value].
function load($file, $maxAge) {
    $out = [];
    $now = time();
    foreach (@file($file, FILE_IGNORE_NEW_LINES) ?: [] as $line) {
        $f = explode(' ', $line);
        if (count($f) === 3 && $now - (int)$f[1] <= $maxAge) {
            $out[$f[0]] = [(int)$f[1], $f[2]];
        }
    }
    return $out;
}

function render($entries) {
    ksort($entries);
    $s = "remora-board v1\n";
    foreach ($entries as $k => $e) {
        $s .= $k . ' ' . $e[0] . ' ' . $e[1] . "\n";
    }
    return $s;
}

$method = $_SERVER['REQUEST_METHOD'];
if ($method === 'GET' || $method === 'HEAD') {
    flock($lock, LOCK_SH);
    $body = render(load($file, $MAX_AGE));
    flock($lock, LOCK_UN);
    $etag = '"' . hash('sha256', $body) . '"';
    header('ETag: ' . $etag);
    header('Cache-Control: no-cache');
    if (trim($_SERVER['HTTP_IF_NONE_MATCH'] ?? '') === $etag) {
        http_response_code(304);
        exit;
    }
    header('Content-Type: text/plain; charset=utf-8');
    if ($method === 'GET') {
        echo $body;
    }
    exit;
}
if ($method !== 'POST') {
    header('Allow: GET, HEAD, POST');
    fail(405, 'GET reads the board, POST writes one entry');
}
if ($TOKEN !== '' && !hash_equals($TOKEN, (string)($_POST['token'] ?? ''))) {
    fail(403, 'wrong or missing token');
}
$key = (string)($_POST['key'] ?? '');
$value = (string)($_POST['value'] ?? '');
if (!preg_match('/^r[a-z2-7]{32}$/', $key)) {
    fail(400, 'key: want r and 32 base32 letters');
}
if (strlen($value) > $MAX_VALUE * 4 / 3 + 4 || ($value !== '' && !preg_match('/^[A-Za-z0-9+\/]+$/', $value))) {
    fail(400, 'value: want unpadded base64 of at most ' . $MAX_VALUE . ' bytes');
}
flock($lock, LOCK_EX);
$entries = load($file, $MAX_AGE);
if ($value === '') {
    unset($entries[$key]);
} else {
    $entries[$key] = [time(), $value];
    if (count($entries) > $MAX_ENTRIES) {
        uasort($entries, function ($a, $b) { return $a[0] <=> $b[0]; });
        $entries = array_slice($entries, count($entries) - $MAX_ENTRIES, null, true);
    }
}
$tmp = $file . '.tmp';
file_put_contents($tmp, render($entries));
rename($tmp, $file);
flock($lock, LOCK_UN);
header('Content-Type: text/plain');
echo "stored\n";
