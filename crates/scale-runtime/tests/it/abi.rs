use crate::common::Lang;
