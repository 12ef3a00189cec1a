use consentgate::domain::phone::Phone;
fn main() {
    let n = 200_000u64;
    let nums: Vec<String> = (0..n).map(|i| format!("+3161{:07}", (i * 7919) % 10_000_000)).collect();
    let t = std::time::Instant::now();
    let mut ok = 0;
    for s in &nums { if Phone::parse(s, None).is_ok() { ok += 1; } }
    let el = t.elapsed();
    println!("{} ok, {:.2} us/parse", ok, el.as_secs_f64() * 1e6 / n as f64);
    let nums: Vec<String> = (0..n).map(|i| format!("+1415{:07}", (i * 7919) % 10_000_000)).collect();
    let t = std::time::Instant::now();
    let mut ok = 0;
    for s in &nums { if Phone::parse(s, None).is_ok() { ok += 1; } }
    println!("{} ok, {:.2} us/parse (US)", ok, t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
