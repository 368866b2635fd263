//! Which topic each priority class goes to.

use std::sync::Arc;

use sluice_engine::{Priority, CLASSES};

/// Which topic each priority class goes to: records of a class at or above a threshold go to
/// that threshold's topic (the highest that applies), the rest to the sink's own topic. Use
/// it to send alerts to one topic and bulk to another, or to *park* low-value records in a
/// topic that a separate consumer group works through when there is capacity to spare
/// (Kafka as the deferred queue).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassRoutes {
    routes: Vec<(Priority, String)>,
}

impl ClassRoutes {
    /// No routes: every record to the sink's topic.
    pub fn new() -> Self {
        ClassRoutes::default()
    }

    /// Records of class `class` and above go to `topic` (unless a higher threshold applies).
    pub fn at_or_above(mut self, class: Priority, topic: &str) -> Self {
        self.routes.retain(|(c, _)| *c != class);
        self.routes.push((class, topic.to_string()));
        self
    }

    /// The topics and, per class, the index of its topic (0: `default`).
    pub(super) fn table(&self, default: &str) -> (Vec<String>, [usize; CLASSES]) {
        let mut topics = vec![default.to_string()];
        let mut sorted = self.routes.clone();
        sorted.sort();
        let mut table = [0usize; CLASSES];
        for (class, topic) in sorted {
            let i = match topics.iter().position(|t| *t == topic) {
                Some(i) => i,
                None => {
                    topics.push(topic);
                    topics.len() - 1
                }
            };
            for slot in table.iter_mut().skip(class.index()) {
                *slot = i;
            }
        }
        (topics, table)
    }
}

/// Classifies a record for [`ClassRoutes`].
pub type ClassOf<T> = Arc<dyn Fn(&T) -> Priority + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_goes_to_the_highest_threshold_at_or_below_it() {
        let r = ClassRoutes::new()
            .at_or_above(Priority::ERROR, "pager")
            .at_or_above(Priority::WARN, "alerts")
            .at_or_above(Priority::ERROR, "pager"); // given twice: one route
        let (topics, table) = r.table("bulk");
        assert_eq!(topics, ["bulk", "alerts", "pager"]);
        let topic = |c: Priority| topics[table[c.index()]].as_str();
        assert_eq!(topic(Priority::DEBUG), "bulk");
        assert_eq!(topic(Priority::INFO), "bulk");
        assert_eq!(topic(Priority::WARN), "alerts");
        assert_eq!(topic(Priority::ERROR), "pager");
        assert_eq!(topic(Priority::rank(7)), "pager");
        let (topics, table) = ClassRoutes::new().table("only");
        assert_eq!(topics, ["only"]);
        assert!(table.iter().all(|&i| i == 0));
    }
}
