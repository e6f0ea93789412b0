import Foundation

/// Built-in words and a seeded sentence generator: the shipped sample text for perplexity, the
/// keys of RULER needles and the word pool of common-words extraction. Plain everyday English
/// written for this project (no copyrighted text).
enum SampleText {
    static let adjectives: [String] = """
        able ancient angry bold brave bright brisk broad busy calm careful cheap clean clear clever \
        cold cool cozy crisp curious damp dark deep dry dull eager early easy empty fair faint \
        famous fast fierce fine firm flat fresh friendly full gentle giant glad golden good grand \
        great green grey happy hard heavy high hollow honest hot huge humble hungry icy jolly keen \
        kind large late lazy light little lively lonely long loud lucky mild modern narrow neat new \
        nice noble odd old open orange pale patient plain pleasant polite poor proud purple quick \
        quiet rapid rare red rich rough round royal rusty sad safe salty sharp shiny short shy \
        silent silver simple slow small smooth soft solid sour spare steady steep still strange \
        strong sturdy sunny sweet swift tall tame tender thick thin tidy tiny tired tough true \
        warm weak wet white wide wild windy wise wooden yellow young
        """.split(separator: " ").map(String.init)

    static let nouns: [String] = """
        acorn anchor apple arrow attic autumn badge bakery ball balloon banner barn basket beach \
        beacon bean bear bell bench berry bicycle bird blanket boat bolt book bottle bowl branch \
        bread brick bridge brook broom brush bucket cabin cable cake camel camera candle canoe \
        canyon carpet carrot castle cat cave cellar chair chalk cherry chest chimney clock cloud \
        coat coffee comet compass cookie copper corner cottage cotton county cradle crane crayon \
        creek crown cup curtain cushion daisy desert desk diamond dinner dock dog door dragon \
        drawer dream drum eagle engine envelope falcon farm feather fence ferry field finger fire \
        flag flute forest fountain fox garden gate giraffe glove goat guitar hammer harbor harvest \
        hat hawk helmet hill honey horse island jacket jar kettle key kitchen kite ladder lake \
        lamp lantern leaf lemon letter library lily lion map maple market meadow melon mirror \
        mitten monkey moon mountain mouse needle nest net notebook oak ocean olive orchard otter \
        owl paddle paint palace pancake paper parrot path peach pearl pebble pencil pepper piano \
        pillow pine planet plate pocket pond pony potato puzzle quilt rabbit radio rain ribbon \
        river road robin rocket roof rope rose saddle sail salmon sandal scarf school shadow shell \
        ship shoe shovel silk sink sled snail snow sock sofa spoon spring squirrel stable stair \
        star station stone storm stove street sugar summer sun swan table teapot tent thunder \
        ticket tiger timber tower towel tractor train tree tulip tunnel turtle umbrella valley \
        vase violin wagon wall walnut watch water whale wheel whistle window winter wolf yard
        """.split(separator: " ").map(String.init)

    static let verbsPast: [String] = """
        admired borrowed built carried caught chased cleaned climbed collected covered crossed \
        delivered discovered drew fed filled fixed followed found gathered guarded held helped \
        hid kept lifted loaded mended moved noticed opened packed painted passed planted pulled \
        pushed raised reached repaired saw shared showed sold sorted spotted stacked studied \
        swept touched traded visited washed watched wrapped
        """.split(separator: " ").map(String.init)

    static let prepositions = ["near", "behind", "under", "beside", "above", "across", "beyond", "around", "inside"]
    static let names = ["Ada", "Ben", "Clara", "Dev", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jonas",
                        "Kira", "Leo", "Maya", "Nils", "Olga", "Pablo", "Rosa", "Sami", "Tara", "Umar"]

    /// Distinct words for lists (common-words extraction): adjectives, nouns, then the verbs.
    static var wordPool: [String] {
        var seen = Set<String>(), out: [String] = []
        for w in nouns + adjectives + verbsPast where seen.insert(w).inserted { out.append(w) }
        return out
    }

    /// The i-th made-up pronounceable word: `index` in base 70, each digit a consonant-vowel
    /// syllable, at least three syllables (so distinct indices give distinct words). Callers skip
    /// the rare one that equals a real word (e.g. "potato").
    static func pseudoWord(_ index: Int) -> String {
        let consonants = Array("bdfgklmnprstvz"), vowels = Array("aeiou")
        var i = index, out = ""
        repeat {
            let syllable = i % 70
            out.append(consonants[syllable % 14]); out.append(vowels[syllable / 14])
            i /= 70
        } while i > 0 || out.count < 6
        return out
    }

    /// A key of the RULER word type: "adjective-noun".
    static func wordKey(_ rng: inout TaskRNG) -> String { rng.pick(adjectives) + "-" + rng.pick(nouns) }

    /// One seeded sentence of the sample text.
    static func sentence(_ rng: inout TaskRNG) -> String {
        let a = { (r: inout TaskRNG) in r.pick(adjectives) }, n = { (r: inout TaskRNG) in r.pick(nouns) }
        let v = { (r: inout TaskRNG) in r.pick(verbsPast) }, p = { (r: inout TaskRNG) in r.pick(prepositions) }
        func an(_ word: String, _ capital: Bool = false) -> String {
            let article = "aeiou".contains(word.first ?? "x") ? "an" : "a"
            return (capital ? article.capitalized : article) + " " + word
        }
        switch rng.int(below: 6) {
        case 0: return "The \(a(&rng)) \(n(&rng)) \(v(&rng)) the \(n(&rng)) \(p(&rng)) the \(a(&rng)) \(n(&rng))."
        case 1:
            let subject = n(&rng), verb = v(&rng), adjective = a(&rng), object = n(&rng)
            return "\(an(subject, true)) \(verb) \(an(adjective)) \(object)."
        case 2: return "\(rng.pick(names)) \(v(&rng)) the \(n(&rng)) and the \(n(&rng))."
        case 3:
            let adjective = a(&rng), place = n(&rng), subject = n(&rng), verb = v(&rng), object = n(&rng)
            return "In the \(adjective) \(place), the \(subject) \(verb) \(an(object))."
        case 4: return "Every \(n(&rng)) \(p(&rng)) the \(n(&rng)) was \(a(&rng))."
        default: return "Later \(rng.pick(names)) and \(rng.pick(names)) \(v(&rng)) the \(a(&rng)) \(n(&rng)) \(p(&rng)) the \(n(&rng))."
        }
    }

    /// `count` seeded sentences in paragraphs of 4 to 8 sentences (blank line between paragraphs).
    static func text(sentences count: Int, _ rng: inout TaskRNG) -> String {
        var out = "", left = 0
        for i in 0..<count {
            if left == 0 {
                if i > 0 { out += "\n\n" }
                left = rng.int(in: 4...8)
            } else { out += " " }
            out += sentence(&rng); left -= 1
        }
        return out
    }
}
