//! Flatcar's real payload public keys (`coreos-base/coreos-au-key`):
//! `developer-v1.pub.pem` (dev builds; `md5sum` gives 7192addf…, the sum
//! Flatcar's postinst uses to spot dev keys, so this is the exact file) and
//! `official-v2.pub.pem` (production, installed as
//! `/usr/share/update_engine/update-payload-key.pub.pem`). No real Flatcar
//! payload is available offline, so what is proven here is that the key
//! files load as the RSA keys the v1 verifier uses, and that they reject a
//! payload they did not sign.

mod common;

use std::io::Cursor;
use std::path::PathBuf;

use common::*;
use payload::generate::GenOptions;
use payload::{Keyring, PayloadError};

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/flatcar")
        .join(name)
}

#[test]
fn flatcar_key_files_are_the_published_ones() {
    for (name, want) in [
        (
            "developer-v1.pub.pem",
            "d410d94dc56a1cba8df71c94ea6925811e44b09416f66958ab7a453f0731d80e",
        ),
        (
            "official-v2.pub.pem",
            "b6a8227f835a4a56988241eaeeda57a19ef5ff413c8533fd791827be2c15dd6c",
        ),
    ] {
        let bytes = std::fs::read(key_file(name)).unwrap();
        assert_eq!(hex::encode(sha(&bytes)), want, "{name}");
        let key = payload::PublicKey::parse(&bytes).unwrap();
        assert_eq!(key.kind(), "rsa2048", "{name}");
    }
}

#[test]
fn flatcar_keys_reject_a_payload_they_did_not_sign() {
    let new = noise(3, 512 * 1024);
    let p = full("usr", &new, &GenOptions::flatcar_v1(), &[rsa_key()]);
    let mut flatcar = Keyring::new();
    flatcar.add_file(&key_file("official-v2.pub.pem")).unwrap();
    flatcar.add_file(&key_file("developer-v1.pub.pem")).unwrap();
    let err = payload::verify(Cursor::new(&p), &flatcar, Default::default()).unwrap_err();
    assert!(
        matches!(err, PayloadError::PayloadSignatureMismatch),
        "{err:?}"
    );
    // Any trusted key may match: with ours beside Flatcar's it verifies.
    let mut both = flatcar.with_key("ours", rsa_key().public());
    payload::verify(Cursor::new(&p), &both, Default::default()).unwrap();
    // A revoked key no longer does, even when it is the only match.
    both.revoke(rsa_key().public().fingerprint());
    assert!(payload::verify(Cursor::new(&p), &both, Default::default()).is_err());
}

#[test]
fn a_broken_key_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("update-payload-key.pub.pem");
    std::fs::write(
        &f,
        "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let err = Keyring::new().add_file(&f).unwrap_err().to_string();
    assert!(err.contains("update-payload-key.pub.pem"), "{err}");
    let err = Keyring::new()
        .add_file(&dir.path().join("missing.pem"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.pem"), "{err}");
}
