//! The native half of the Node and web built-ins that `builtins.js` gives hooks: byte
//! codecs, digests and HMACs (aws-lc-rs; MD5 from `md-5`, which aws-lc-rs does not
//! offer), randomness, and WHATWG URL parsing and form encoding (the `url` and
//! `form_urlencoded` crates the proxy already uses).
//!
//! These functions are never globals: `builtins.js` receives them as one object and
//! keeps them in its closure. They take and give plain values (strings, `Uint8Array`s,
//! `ArrayBuffer`s); names and arguments are checked in JS, which throws Node's errors,
//! so a wrong value reaching here is a plain `TypeError`, never a panic.

use aws_lc_rs::{constant_time, digest, hmac, rand as lc_rand};
use base64::Engine as _;
use boa_engine::object::ObjectInitializer;
use boa_engine::object::builtins::{AlignedVec, JsArray, JsArrayBuffer, JsUint8Array};
use boa_engine::{
    Context, JsArgs, JsNativeError, JsObject, JsResult, JsString, JsValue, NativeFunction,
};

/// The object of native functions handed to `builtins.js`.
pub(crate) fn natives(ctx: &mut Context) -> JsObject {
    let table: [(
        &str,
        usize,
        boa_engine::native_function::NativeFunctionPointer,
    ); 11] = [
        ("decode", 2, decode),
        ("encode", 2, encode),
        ("utf8Decode", 3, utf8_decode),
        ("hash", 2, hash),
        ("hmac", 3, hmac_fn),
        ("random", 1, random),
        ("equal", 2, equal),
        ("urlParse", 2, url_parse),
        ("urlSet", 3, url_set),
        ("formParse", 1, form_parse),
        ("formSerialize", 1, form_serialize),
    ];
    let mut o = ObjectInitializer::new(ctx);
    for (name, length, f) in table {
        o.function(NativeFunction::from_fn_ptr(f), JsString::from(name), length);
    }
    o.build()
}

fn type_error(message: &str) -> boa_engine::JsError {
    JsNativeError::typ().with_message(message.to_owned()).into()
}

fn string_arg(args: &[JsValue], i: usize) -> JsResult<JsString> {
    args.get_or_undefined(i)
        .as_string()
        .ok_or_else(|| type_error("expected a string"))
}

fn bytes_arg(args: &[JsValue], i: usize, ctx: &mut Context) -> JsResult<Vec<u8>> {
    let obj = args
        .get_or_undefined(i)
        .as_object()
        .ok_or_else(|| type_error("expected a Uint8Array"))?;
    JsUint8Array::from_object(obj)?.to_vec(ctx)
}

/// Bytes as a fresh `ArrayBuffer`, which JS wraps in a Buffer or Uint8Array view.
fn buffer_of(bytes: &[u8], ctx: &mut Context) -> JsResult<JsValue> {
    Ok(JsArrayBuffer::from_byte_block(AlignedVec::from_slice(0, bytes), ctx)?.into())
}

fn js_str(s: &str) -> JsValue {
    JsValue::from(JsString::from(s))
}

/// `decode(string, encoding)`: a string's bytes in one of Node's encodings, as
/// `Buffer.from(string, encoding)` makes them.
fn decode(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let s = string_arg(args, 0)?;
    let enc = string_arg(args, 1)?.to_std_string_escaped();
    let bytes = match enc.as_str() {
        // Lone surrogates become U+FFFD, as V8 writes them.
        "utf8" => s.to_std_string_lossy().into_bytes(),
        // Each UTF-16 unit's low byte: Node's latin1 (and ascii) writers.
        "latin1" | "ascii" => s.iter().map(|u| u as u8).collect(),
        "utf16le" => s.iter().flat_map(u16::to_le_bytes).collect(),
        "base64" | "base64url" => base64_decode_lenient(&s.to_vec()),
        "hex" => hex_decode_prefix(&s.to_vec()),
        _ => return Err(type_error("unknown encoding")),
    };
    buffer_of(&bytes, ctx)
}

/// `encode(bytes, encoding)`: bytes as a string, as `buf.toString(encoding)` gives it.
fn encode(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let bytes = bytes_arg(args, 0, ctx)?;
    let enc = string_arg(args, 1)?.to_std_string_escaped();
    let units = |it: &mut dyn Iterator<Item = u16>| {
        JsValue::from(JsString::from(&it.collect::<Vec<u16>>()[..]))
    };
    Ok(match enc.as_str() {
        // Invalid sequences become U+FFFD per maximal subpart, as V8 decodes them.
        "utf8" => js_str(&String::from_utf8_lossy(&bytes)),
        "latin1" => units(&mut bytes.iter().map(|&b| u16::from(b))),
        "ascii" => units(&mut bytes.iter().map(|&b| u16::from(b & 0x7f))),
        "utf16le" => units(
            &mut bytes
                .chunks_exact(2)
                .map(|p| u16::from_le_bytes([p[0], p[1]])),
        ),
        "base64" => js_str(&base64::engine::general_purpose::STANDARD.encode(&bytes)),
        "base64url" => js_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes)),
        "hex" => {
            let mut out = String::with_capacity(bytes.len() * 2);
            for b in &bytes {
                use std::fmt::Write as _;
                let _ = write!(out, "{b:02x}");
            }
            js_str(&out)
        }
        _ => return Err(type_error("unknown encoding")),
    })
}

/// Node's base64 reader, for both alphabets alike: characters outside them are skipped,
/// the first `=` ends the input, a lone trailing sextet is dropped, and the result is
/// cut to the size Node reserves from the raw length (`base64_decoded_size`).
fn base64_decode_lenient(units: &[u16]) -> Vec<u8> {
    let sextet = |u: u16| -> Option<u32> {
        let c = u8::try_from(u).ok()?;
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(units.len() * 3 / 4 + 2);
    let (mut acc, mut n) = (0u32, 0u32);
    for &u in units {
        if u == u16::from(b'=') {
            break;
        }
        let Some(v) = sextet(u) else { continue };
        acc = (acc << 6) | v;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    let mut size = units.len();
    if size >= 2 && units[size - 1] == u16::from(b'=') {
        size -= 1;
        if units[size - 1] == u16::from(b'=') {
            size -= 1;
        }
    }
    let reserved = if size < 2 {
        0
    } else {
        let rem = size % 4;
        size / 4 * 3
            + if rem == 0 {
                0
            } else {
                1 + usize::from(rem == 3)
            }
    };
    out.truncate(reserved);
    out
}

/// Node's hex reader: pairs of hex digits up to the first pair that is not one; an odd
/// last digit is dropped.
fn hex_decode_prefix(units: &[u16]) -> Vec<u8> {
    let digit = |u: u16| char::from_u32(u32::from(u)).and_then(|c| c.to_digit(16));
    let mut out = Vec::with_capacity(units.len() / 2);
    for pair in units.chunks_exact(2) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
            _ => break,
        }
    }
    out
}

/// `utf8Decode(bytes, fatal, ignoreBOM)`: `TextDecoder('utf-8').decode`.
fn utf8_decode(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let bytes = bytes_arg(args, 0, ctx)?;
    let fatal = args.get_or_undefined(1).to_boolean();
    let ignore_bom = args.get_or_undefined(2).to_boolean();
    let body = match bytes.strip_prefix(&[0xef, 0xbb, 0xbf]) {
        Some(rest) if !ignore_bom => rest,
        _ => &bytes[..],
    };
    if fatal {
        return match std::str::from_utf8(body) {
            Ok(s) => Ok(js_str(s)),
            Err(_) => Err(type_error(
                "The encoded data was not valid for encoding utf-8",
            )),
        };
    }
    Ok(js_str(&String::from_utf8_lossy(body)))
}

fn digest_of(name: &str) -> Option<&'static digest::Algorithm> {
    Some(match name {
        "sha1" => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        "sha224" => &digest::SHA224,
        "sha256" => &digest::SHA256,
        "sha384" => &digest::SHA384,
        "sha512" => &digest::SHA512,
        _ => return None,
    })
}

/// `hash(algorithm, data)`: the digest of the bytes; the name is already normalized.
fn hash(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let alg = string_arg(args, 0)?.to_std_string_escaped();
    let data = bytes_arg(args, 1, ctx)?;
    if alg == "md5" {
        use md5::Digest as _;
        return buffer_of(&md5::Md5::digest(&data), ctx);
    }
    let alg = digest_of(&alg).ok_or_else(|| type_error("Digest method not supported"))?;
    buffer_of(digest::digest(alg, &data).as_ref(), ctx)
}

/// `hmac(algorithm, key, data)`. The key is never part of an error or a log line.
fn hmac_fn(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let alg = string_arg(args, 0)?.to_std_string_escaped();
    let key = bytes_arg(args, 1, ctx)?;
    let data = bytes_arg(args, 2, ctx)?;
    if alg == "md5" {
        return buffer_of(&hmac_md5(&key, &data), ctx);
    }
    let alg = match alg.as_str() {
        "sha1" => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        "sha224" => hmac::HMAC_SHA224,
        "sha256" => hmac::HMAC_SHA256,
        "sha384" => hmac::HMAC_SHA384,
        "sha512" => hmac::HMAC_SHA512,
        _ => return Err(type_error("Invalid digest")),
    };
    let tag = hmac::sign(&hmac::Key::new(alg, &key), &data);
    buffer_of(tag.as_ref(), ctx)
}

/// RFC 2104 over MD5, which aws-lc-rs's `hmac` does not offer.
fn hmac_md5(key: &[u8], data: &[u8]) -> Vec<u8> {
    use md5::Digest as _;
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..16].copy_from_slice(&md5::Md5::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |x: u8| k.map(|b| b ^ x);
    let inner = md5::Md5::new()
        .chain_update(pad(0x36))
        .chain_update(data)
        .finalize();
    md5::Md5::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

const MAX_RANDOM: f64 = 64.0 * 1024.0 * 1024.0;

/// `random(n)`: n bytes from the system's CSPRNG.
fn random(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let n = args.get_or_undefined(0).as_number().unwrap_or(-1.0);
    // JS checks Node's bounds; this keeps the cast sound and one call's buffer far below
    // any worker's memory limit.
    if !(0.0..=MAX_RANDOM).contains(&n) || n.fract() != 0.0 {
        return Err(JsNativeError::range()
            .with_message("randomBytes gives at most 64 MiB at a time in a hook")
            .into());
    }
    let mut out = vec![0u8; n as usize];
    lc_rand::fill(&mut out).map_err(|_| type_error("no randomness available"))?;
    buffer_of(&out, ctx)
}

/// `equal(a, b)`: byte equality in time independent of the contents.
fn equal(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let a = bytes_arg(args, 0, ctx)?;
    let b = bytes_arg(args, 1, ctx)?;
    Ok(JsValue::from(
        constant_time::verify_slices_are_equal(&a, &b).is_ok(),
    ))
}

/// A parsed URL's parts, in the order `builtins.js` reads them.
fn url_parts(u: &url::Url, ctx: &mut Context) -> JsValue {
    use url::quirks as q;
    let parts = [
        q::href(u),
        &q::origin(u),
        q::protocol(u),
        q::username(u),
        q::password(u),
        q::host(u),
        q::hostname(u),
        q::port(u),
        q::pathname(u),
        q::search(u),
        q::hash(u),
    ]
    .map(js_str);
    JsArray::from_iter(parts, ctx).into()
}

/// `urlParse(input, base)`: the WHATWG URL parser; null when the input is no URL.
fn url_parse(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let input = string_arg(args, 0)?.to_std_string_lossy();
    let base = match args.get_or_undefined(1).as_string() {
        Some(b) => match url::Url::parse(&b.to_std_string_lossy()) {
            Ok(b) => Some(b),
            Err(_) => return Ok(JsValue::null()),
        },
        None => None,
    };
    match url::Url::options().base_url(base.as_ref()).parse(&input) {
        Ok(u) => Ok(url_parts(&u, ctx)),
        Err(_) => Ok(JsValue::null()),
    }
}

/// `urlSet(href, part, value)`: a URL setter as WHATWG defines it (a value a setter
/// refuses leaves the URL as it was); null when `href` itself is refused.
fn url_set(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    use url::quirks as q;
    let href = string_arg(args, 0)?.to_std_string_lossy();
    let part = string_arg(args, 1)?.to_std_string_escaped();
    let value = string_arg(args, 2)?.to_std_string_lossy();
    let Ok(mut u) = url::Url::parse(&href) else {
        return Ok(JsValue::null());
    };
    match part.as_str() {
        "href" => {
            if q::set_href(&mut u, &value).is_err() {
                return Ok(JsValue::null());
            }
        }
        "protocol" => drop(q::set_protocol(&mut u, &value)),
        "username" => drop(q::set_username(&mut u, &value)),
        "password" => drop(q::set_password(&mut u, &value)),
        "host" => drop(q::set_host(&mut u, &value)),
        "hostname" => drop(q::set_hostname(&mut u, &value)),
        "port" => drop(q::set_port(&mut u, &value)),
        "pathname" => q::set_pathname(&mut u, &value),
        "search" => q::set_search(&mut u, &value),
        "hash" => q::set_hash(&mut u, &value),
        _ => return Err(type_error("unknown URL part")),
    }
    Ok(url_parts(&u, ctx))
}

/// `formParse(string)`: application/x-www-form-urlencoded pairs, flattened
/// `[name, value, name, value, …]`.
fn form_parse(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let s = string_arg(args, 0)?.to_std_string_lossy();
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(s.as_bytes()) {
        out.push(js_str(&k));
        out.push(js_str(&v));
    }
    Ok(JsArray::from_iter(out, ctx).into())
}

/// `formSerialize([name, value, …])`: the urlencoded serializer of URLSearchParams.
fn form_serialize(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let list = args
        .get_or_undefined(0)
        .as_object()
        .ok_or_else(|| type_error("expected an array"))?;
    let list = JsArray::from_object(list)?;
    let len = list.length(ctx)?;
    let mut ser = form_urlencoded::Serializer::new(String::new());
    let mut i = 0;
    while i + 1 < len {
        let k = list.get(i, ctx)?.to_string(ctx)?.to_std_string_lossy();
        let v = list.get(i + 1, ctx)?.to_string(ctx)?.to_std_string_lossy();
        ser.append_pair(&k, &v);
        i += 2;
    }
    Ok(js_str(&ser.finish()))
}
