//! Tests for [`super`]: what people read.

use std::time::Duration;

use super::*;

#[test]
fn seconds_read_well() {
    assert_eq!(seconds(Duration::from_millis(400)), "0.4s");
    assert_eq!(seconds(Duration::from_secs(30)), "30s");
    assert_eq!(seconds(Duration::from_millis(29_500)), "29.5s");
}
