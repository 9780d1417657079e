//! EC2's XML answers as a small tree of elements: names without namespace prefixes, text with
//! entities decoded, attributes dropped (EC2 puts nothing in them that gilliam reads).

/// One element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// The element's own text (for a leaf: its value), entities decoded.
    pub text: String,
    pub children: Vec<Node>,
}

/// An answer that is not well-formed XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError(pub String);

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for XmlError {}

/// Deeper than any EC2 answer: a bound so that a hostile answer cannot exhaust memory by depth.
const MAX_DEPTH: usize = 64;

impl Node {
    /// The document's root element.
    pub fn parse(text: &str) -> Result<Node, XmlError> {
        use xmlparser::{ElementEnd, Token, Tokenizer};
        let mut stack: Vec<Node> = Vec::new();
        let mut root: Option<Node> = None;
        for token in Tokenizer::from(text) {
            let token = token.map_err(|e| XmlError(e.to_string()))?;
            match token {
                Token::ElementStart { local, .. } => {
                    if root.is_some() {
                        return Err(XmlError(format!("a second root element <{local}>")));
                    }
                    if stack.len() >= MAX_DEPTH {
                        return Err(XmlError(format!("elements nested deeper than {MAX_DEPTH}")));
                    }
                    stack.push(Node { name: local.as_str().to_string(), ..Node::default() });
                }
                Token::ElementEnd { end, .. } => {
                    let close = match end {
                        ElementEnd::Open => continue,
                        ElementEnd::Close(_, local) => Some(local.as_str()),
                        ElementEnd::Empty => None,
                    };
                    let node = stack.pop().ok_or_else(|| XmlError("a closing tag with no element open".into()))?;
                    if let Some(local) = close {
                        if local != node.name {
                            return Err(XmlError(format!("</{local}> closes <{}>", node.name)));
                        }
                    }
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(node),
                        None => root = Some(node),
                    }
                }
                Token::Text { text } => {
                    if let Some(node) = stack.last_mut() {
                        node.text.push_str(&unescape(text.as_str())?);
                    }
                }
                Token::Cdata { text, .. } => {
                    if let Some(node) = stack.last_mut() {
                        node.text.push_str(text.as_str());
                    }
                }
                _ => {}
            }
        }
        match (root, stack.is_empty()) {
            (Some(r), true) => Ok(r),
            (_, false) => Err(XmlError("the answer ends inside an element".into())),
            (None, true) => Err(XmlError("the answer has no element".into())),
        }
    }

    /// The first child element named `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The trimmed text of the child `name`.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// The child `name` read as EC2's `true` / `false`.
    pub fn flag(&self, name: &str) -> Option<bool> {
        match self.text(name)? {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    /// The `item`s of the list element `name` (EC2's `vpcSet`, `routeSet`, ...): none when the
    /// list is absent or empty.
    pub fn items<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Node> + 'a {
        self.child(name).into_iter().flat_map(|l| l.children.iter().filter(|c| c.name == "item"))
    }

    /// The texts of a list of plain values (`routeTableIdSet`, `subnetIdSet`, ...).
    pub fn texts(&self, name: &str) -> Vec<String> {
        self.items(name).map(|i| i.text.trim().to_string()).collect()
    }
}

fn unescape(s: &str) -> Result<String, XmlError> {
    if !s.contains('&') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';').ok_or_else(|| XmlError(format!("an unterminated entity in {s:?}")))? + at;
        let entity = &rest[at + 1..end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = entity
                    .strip_prefix("#x")
                    .map(|h| u32::from_str_radix(h, 16))
                    .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32);
                code.ok_or_else(|| XmlError(format!("an unknown entity &{entity};")))?
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeRouteTablesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>6f570b0b-9c18-4b07-bdec-73740dcf861a</requestId>
    <routeTableSet>
        <item>
            <routeTableId>rtb-1</routeTableId>
            <routeSet>
                <item><destinationCidrBlock>10.0.0.0/16</destinationCidrBlock><gatewayId>local</gatewayId></item>
                <item><destinationCidrBlock>0.0.0.0/0</destinationCidrBlock><natGatewayId>nat-1</natGatewayId></item>
            </routeSet>
            <associationSet>
                <item><main>false</main><subnetId>subnet-a</subnetId></item>
            </associationSet>
            <tagSet/>
        </item>
    </routeTableSet>
    <nextToken>t&amp;2</nextToken>
</DescribeRouteTablesResponse>"#;

    #[test]
    fn reads_ec2_lists_leaves_and_flags() {
        let root = Node::parse(ROUTES).expect("parses");
        assert_eq!(root.name, "DescribeRouteTablesResponse");
        let tables: Vec<_> = root.items("routeTableSet").collect();
        assert_eq!(tables.len(), 1);
        let t = tables[0];
        assert_eq!(t.text("routeTableId"), Some("rtb-1"));
        let routes: Vec<_> = t.items("routeSet").map(|r| (r.text("destinationCidrBlock"), r.text("natGatewayId"))).collect();
        assert_eq!(routes, vec![(Some("10.0.0.0/16"), None), (Some("0.0.0.0/0"), Some("nat-1"))]);
        assert_eq!(t.items("associationSet").next().and_then(|a| a.flag("main")), Some(false));
        assert_eq!(t.items("tagSet").count(), 0);
        assert_eq!(t.items("missingSet").count(), 0);
        assert_eq!(root.text("nextToken"), Some("t&2"));
    }

    #[test]
    fn entities_decode_and_bad_documents_are_errors_not_panics() {
        assert_eq!(unescape("a &lt;b&gt; &#65;&#x42; &quot;&apos;").expect("ok"), "a <b> AB \"'");
        for bad in ["", "<a>", "<a></b>", "<a/><b/>", "<a>&nope;</a>", "<a>&#xZZ;</a>", "<a>&amp</a>", "not xml"] {
            assert!(Node::parse(bad).is_err(), "{bad:?} should not parse");
        }
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(Node::parse(&deep).expect_err("too deep").0.contains("deeper"));
    }
}
