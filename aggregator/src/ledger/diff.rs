//! Who gains or loses access to what between two catalogues.

use std::collections::BTreeSet;

use confiance::catalogue::Catalogue;

use super::answer::{Access, CatalogueDiff, HoldChange, LegalBasisChange, Removal};

fn accesses(c: &Catalogue) -> BTreeSet<Access> {
    let mut out = BTreeSet::new();
    for (m, metric) in c.metrics() {
        for r in &metric.recipients {
            for p in &metric.purposes {
                if c.purpose(p).is_some() && c.recipient(r).is_some() {
                    out.insert(Access { metric: m.clone(), recipient: r.clone(), purpose: p.clone() });
                }
            }
        }
    }
    out
}

/// The difference from catalogue `a` to catalogue `b`: every (metric, recipient,
/// purpose) that `b` allows and `a` does not (added) and the reverse (removed, with
/// `grants` left at 0: [`Ledger::diff`](super::Ledger::diff) counts them), metrics whose
/// maximum hold changes and purposes whose legal basis changes.
///
/// ```
/// use confiance::catalogue::Catalogue;
/// let a = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
/// let d = confiance_aggregator::ledger::diff(&a, &a);
/// assert!(d.added.is_empty() && d.removed.is_empty() && d.hold_changes.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn diff(a: &Catalogue, b: &Catalogue) -> CatalogueDiff {
    let (xa, xb) = (accesses(a), accesses(b));
    let added = xb.difference(&xa).cloned().collect();
    let removed = xa.difference(&xb).map(|access| Removal { access: access.clone(), grants: 0 }).collect();
    let hold_changes = a
        .metrics()
        .filter_map(|(id, ma)| {
            let mb = b.metric(id)?;
            (ma.max_hold != mb.max_hold).then(|| HoldChange {
                metric: id.clone(),
                before: ma.max_hold.clone(),
                after: mb.max_hold.clone(),
            })
        })
        .collect();
    let legal_basis_changes = a
        .purposes()
        .filter_map(|(id, pa)| {
            let pb = b.purpose(id)?;
            (pa.legal_basis != pb.legal_basis).then(|| LegalBasisChange {
                purpose: id.clone(),
                before: pa.legal_basis,
                after: pb.legal_basis,
            })
        })
        .collect();
    CatalogueDiff { added, removed, hold_changes, legal_basis_changes }
}
