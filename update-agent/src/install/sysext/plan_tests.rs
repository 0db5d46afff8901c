use super::*;

fn pkg(name: &str) -> Package {
    Package {
        name: name.into(),
        size: 10,
        sha1: None,
        sha256: Some([1; 32]),
        required: false,
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn enabled_lists_merge_and_etc_disables_defaults() {
    let etc = "zfs # storage\n-podman\n\n  python  \n# all commented\n";
    let image = "podman\ndocker-compose\n";
    let got = enabled_extensions(etc, image).unwrap();
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        ["docker-compose", "python", "zfs"]
    );
    // A disabling line only in the image does nothing (Flatcar reads `-`
    // lines from /etc only), and is not an extension either.
    let got = enabled_extensions("", "-zfs\nzfs\n").unwrap();
    assert_eq!(got.into_iter().collect::<Vec<_>>(), ["zfs"]);
}

#[test]
fn names_that_could_leave_their_directory_are_refused() {
    for bad in ["../x", "a/b", ".hidden", "a..b", "a b", "ü"] {
        let err = enabled_extensions(&format!("{bad}\n"), "").unwrap_err();
        assert!(matches!(err, PlanError::BadName { .. }), "{bad}: {err}");
    }
    assert!(oem_id("ID=../../etc\n").is_err());
    assert_eq!(
        oem_id("NAME=x\nID=\"azure\"\n").unwrap(),
        Some("azure".into())
    );
    assert_eq!(oem_id("ID=\n").unwrap(), None);
    assert_eq!(oem_id("").unwrap(), None);
}

#[test]
fn oem_is_wanted_when_listed_or_already_active() {
    let node = |active| NodeFacts {
        oem_id: Some("azure".into()),
        oem_active: active,
        etc_enabled: "zfs\n".into(),
    };
    let image = |lists| ImageFacts {
        lists_oem: lists,
        default_enabled: String::new(),
    };
    let oem = Wanted {
        kind: Kind::Oem,
        name: "azure".into(),
    };
    let zfs = Wanted {
        kind: Kind::Extension,
        name: "zfs".into(),
    };
    assert_eq!(
        wanted(&node(false), &image(true)).unwrap(),
        [oem.clone(), zfs.clone()]
    );
    assert_eq!(
        wanted(&node(true), &image(false)).unwrap(),
        [oem.clone(), zfs.clone()]
    );
    assert_eq!(oem.package_name(), "oem-azure.gz");
    assert_eq!(zfs.file_name("3600.0.0"), "flatcar-zfs-3600.0.0.raw");
    assert_eq!(wanted(&node(false), &image(false)).unwrap(), [zfs]);
}

#[test]
fn only_wanted_packages_are_chosen_and_missing_ones_fail() {
    let offered = [
        pkg("oem-gce.gz"),
        pkg("oem-azure.gz"),
        pkg("flatcar-zfs.gz"),
        pkg("flatcar-podman.gz"),
    ];
    let want = [
        Wanted {
            kind: Kind::Oem,
            name: "azure".into(),
        },
        Wanted {
            kind: Kind::Extension,
            name: "zfs".into(),
        },
    ];
    let chosen = choose(&want, &offered).unwrap();
    let got: Vec<_> = chosen.iter().map(|(_, p)| p.name.as_str()).collect();
    assert_eq!(got, ["oem-azure.gz", "flatcar-zfs.gz"]);
    let err = choose(&want, &offered[..1]).unwrap_err();
    assert_eq!(
        err,
        PlanError::Missing {
            package: "oem-azure.gz".into()
        }
    );
    let mut unhashed = pkg("oem-azure.gz");
    unhashed.sha256 = None;
    let err = choose(&want[..1], &[unhashed]).unwrap_err();
    assert!(matches!(err, PlanError::Unhashed { .. }), "{err}");
    assert!(offers_extensions(&offered));
    assert!(!offers_extensions(&[pkg("delta-3500.0.0.gz")]));
}

#[test]
fn flags_as_flatcar_writes_them() {
    assert_eq!(
        oem_flags("azure", true, false, true),
        ["migrate-oem-azure", "active-oem-azure"]
    );
    assert_eq!(oem_flags("azure", true, false, false), ["active-oem-azure"]);
    assert!(oem_flags("azure", true, true, true).is_empty());
    assert!(oem_flags("azure", false, false, true).is_empty());
}

#[test]
fn pruning_keeps_both_slots_images_and_the_initial_one() {
    let oem = names(&[
        "oem-azure-3500.0.0.raw",
        "oem-azure-3400.0.0.raw",
        "oem-azure-3600.0.0.raw",
        "oem-azure-initial.raw",
        "active-oem-azure",
        "oem-gce-3400.0.0.raw",
    ]);
    assert_eq!(
        oem_prunable(&oem, "azure", "3500.0.0", "3600.0.0"),
        ["oem-azure-3400.0.0.raw", "oem-gce-3400.0.0.raw"]
    );
    let ext = names(&[
        "flatcar-zfs-3500.0.0.raw",
        "flatcar-zfs-3600.0.0.raw",
        "flatcar-zfs-3400.0.0.raw",
        "flatcar-podman-3500.0.0.raw",
        "other.raw",
    ]);
    let enabled = ["zfs".to_string()].into();
    assert_eq!(
        extensions_prunable(&ext, &enabled, "3500.0.0", "3600.0.0"),
        ["flatcar-zfs-3400.0.0.raw", "flatcar-podman-3500.0.0.raw"]
    );
}

#[test]
fn manifest_partitions_worth_writing() {
    let node = NodeFacts {
        oem_id: Some("azure".into()),
        oem_active: false,
        etc_enabled: "zfs\n-podman\n".into(),
    };
    let parts = names(&[
        "usr",
        "kernel",
        "oem-azure",
        "oem-gce",
        "flatcar-zfs",
        "flatcar-podman",
        "flatcar-python",
        "flatcar-../x",
    ]);
    let got: Vec<String> = manifest_candidates(&node, &parts)
        .iter()
        .map(Wanted::stem)
        .collect();
    assert_eq!(got, ["oem-azure", "flatcar-zfs", "flatcar-python"]);
    assert!(is_extension_partition("oem-gce") && !is_extension_partition("root"));
}
