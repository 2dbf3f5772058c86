//! Kubernetes-style resource quantities (`500m`, `512Mi`) and durations.

use std::time::Duration;

use super::file::Quantity;

/// CPU as millicores: `1` → 1000, `0.5` → 500, `"250m"` → 250.
pub(super) fn cpu_millis(q: &Quantity) -> Result<u64, String> {
    let millis = match q {
        Quantity::Number(n) => *n * 1000.0,
        Quantity::Text(t) => {
            let t = t.trim();
            if let Some(m) = t.strip_suffix('m') {
                m.parse::<f64>()
                    .map_err(|_| format!("'{t}' is not a CPU quantity"))?
            } else {
                t.parse::<f64>()
                    .map_err(|_| format!("'{t}' is not a CPU quantity"))?
                    * 1000.0
            }
        }
    };
    if !millis.is_finite() || !(1.0..=1_000_000.0).contains(&millis) {
        return Err("CPU must be between 1m and 1000 cores".into());
    }
    Ok(millis.round() as u64)
}

/// A size in bytes from text: plain bytes or with `Ki Mi Gi Ti` (powers of 1024) or
/// `K M G T` (powers of 1000), e.g. `512Mi`, `1.5Gi`, `2G`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    const UNITS: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("K", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let t = text.trim();
    let (num, mult) = UNITS
        .iter()
        .find_map(|(suffix, mult)| t.strip_suffix(suffix).map(|n| (n, *mult)))
        .unwrap_or((t, 1));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{t}' is not a size (write e.g. `512Mi` or `20Gi`)"))?;
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(format!(
            "'{t}' is not a size (write e.g. `512Mi` or `20Gi`)"
        ));
    }
    Ok(bytes as u64)
}

/// Memory in bytes: plain bytes or with `Ki Mi Gi Ti` (powers of 1024) or `K M G T` (powers of 1000).
pub(super) fn memory_bytes(q: &Quantity) -> Result<u64, String> {
    let bytes = match q {
        Quantity::Number(n) if n.fract() == 0.0 && *n >= 0.0 => *n,
        Quantity::Number(n) => return Err(format!("{n} is not a whole number of bytes")),
        Quantity::Text(t) => {
            let t = t.trim();
            parse_bytes(t).map_err(|_| format!("'{t}' is not a memory quantity"))? as f64
        }
    };
    if !bytes.is_finite() || bytes < (1 << 20) as f64 {
        return Err("memory must be at least 1Mi".into());
    }
    Ok(bytes as u64)
}

/// `90s`, `10m`, `1h 30m`.
pub(super) fn duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("'{text}' is not a duration ({e})"))?;
    if d.is_zero() {
        return Err("a timeout of zero would never let the job run".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_forms() {
        assert_eq!(cpu_millis(&Quantity::Number(1.0)), Ok(1000));
        assert_eq!(cpu_millis(&Quantity::Number(0.5)), Ok(500));
        assert_eq!(cpu_millis(&Quantity::Text("250m".into())), Ok(250));
        assert!(cpu_millis(&Quantity::Text("lots".into())).is_err());
        assert!(cpu_millis(&Quantity::Number(0.0)).is_err());
    }

    #[test]
    fn memory_forms() {
        assert_eq!(memory_bytes(&Quantity::Text("512Mi".into())), Ok(512 << 20));
        assert_eq!(
            memory_bytes(&Quantity::Text("2G".into())),
            Ok(2_000_000_000)
        );
        assert_eq!(memory_bytes(&Quantity::Number(4194304.0)), Ok(4 << 20));
        assert!(memory_bytes(&Quantity::Text("12 parsecs".into())).is_err());
        assert!(memory_bytes(&Quantity::Text("1Ki".into())).is_err());
        assert_eq!(parse_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_bytes("17"), Ok(17));
        assert!(parse_bytes("-1Gi").is_err() && parse_bytes("Gi").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(duration("soon").is_err());
        assert!(duration("0s").is_err());
    }
}
